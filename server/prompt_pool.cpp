#include "server/prompt_pool.h"

#include <algorithm>

namespace ghostd::server {

PromptPool::PromptPool(int threads) {
  for (int i = 0; i < std::max(1, threads); ++i) workers_.emplace_back([this] { work(); });
}

PromptPool::~PromptPool() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    queues_.clear();
    queued_ = 0;
  }
  cv_.notify_all();
  for (auto& w : workers_) w.join();
}

void PromptPool::submit(uint64_t session, std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    queues_[session].push_back(std::move(task));
    ++queued_;
  }
  cv_.notify_one();
}

size_t PromptPool::queued() const {
  std::lock_guard lock(mu_);
  return queued_;
}

void PromptPool::work() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queues_.empty(); });
      if (stopping_) return;
      auto it = queues_.lower_bound(cursor_);
      if (it == queues_.end()) it = queues_.begin();
      task = std::move(it->second.front());
      it->second.pop_front();
      --queued_;
      cursor_ = it->first + 1;
      if (it->second.empty()) queues_.erase(it);
    }
    task();
  }
}

}  // namespace ghostd::server
