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

ghostd::runtime::Status ModelState::set_ready(std::string name, TokenizerView tokenizer, int context_length) {
  auto fim = detect_fim_template(tokenizer);
  std::string warning;
  if (!fim.ok()) {
    warning = "model " + name + ": " + fim.error().message +
              "; completing left to right from the prefix only (no fill-in-the-middle)";
    fim = plain_template(tokenizer);
  }
  auto info = std::make_shared<ModelInfo>(ModelInfo{std::move(name), std::move(tokenizer), *fim, std::move(warning), context_length});
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

void ModelState::set_load_request_handler(LoadRequestHandler handler) {
  std::optional<std::string> pending;
  {
    std::lock_guard lock(mu_);
    load_handler_ = handler;
    pending = requested_;
  }
  if (pending && handler) handler(*pending);
}

std::string ModelState::requested_draft() const {
  std::lock_guard lock(mu_);
  return requested_draft_;
}

std::optional<std::string> ModelState::request_model(const std::string& path, const std::string& draft) {
  LoadRequestHandler handler;
  {
    std::lock_guard lock(mu_);
    if (requested_) {
      if (path.empty() || path == *requested_) return std::nullopt;
      return "model " + path + " not loaded: this daemon serves " +
             (requested_->empty() ? std::string("its default model") : *requested_) +
             " (one model per daemon; restart it to switch)";
    }
    requested_ = path;
    requested_draft_ = draft;
    handler = load_handler_;
  }
  if (handler) handler(path);
  return std::nullopt;
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
