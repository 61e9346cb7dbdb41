#include "server/model_state.h"

#include <vector>

namespace ghostd::server {

void ModelState::publish(const ModelSnapshot& s) {
  std::vector<std::shared_ptr<Listener>> ls;
  {
    std::lock_guard lock(mu_);
    for (auto& [_, l] : listeners_) ls.push_back(l);
  }
  for (auto& l : ls) (*l)(s);
}

void ModelState::report_progress(int percent, std::string message) {
  ModelSnapshot s;
  {
    std::lock_guard lock(mu_);
    if (state_.phase != ModelSnapshot::Phase::kLoading) return;
    state_.percent = percent;
    state_.message = std::move(message);
    s = state_;
  }
  publish(s);
}

ghostd::runtime::Status ModelState::set_ready(std::string name, TokenizerView tokenizer) {
  auto fim = detect_fim_template(tokenizer);
  if (!fim.ok()) {
    set_failed(fim.error().message);
    return fim.error();
  }
  auto info = std::make_shared<ModelInfo>(ModelInfo{std::move(name), std::move(tokenizer), *fim});
  ModelSnapshot s;
  {
    std::lock_guard lock(mu_);
    state_ = {ModelSnapshot::Phase::kReady, 100, "ready", info};
    s = state_;
  }
  publish(s);
  return {};
}

void ModelState::set_failed(std::string error) {
  ModelSnapshot s;
  {
    std::lock_guard lock(mu_);
    state_ = {ModelSnapshot::Phase::kFailed, 0, std::move(error), nullptr};
    s = state_;
  }
  publish(s);
}

ModelSnapshot ModelState::snapshot() const {
  std::lock_guard lock(mu_);
  return state_;
}

uint64_t ModelState::subscribe(Listener listener) {
  std::lock_guard lock(mu_);
  uint64_t id = next_id_++;
  listeners_[id] = std::make_shared<Listener>(std::move(listener));
  return id;
}

void ModelState::unsubscribe(uint64_t id) {
  std::lock_guard lock(mu_);
  listeners_.erase(id);
}

}  // namespace ghostd::server
