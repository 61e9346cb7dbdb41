#include "runtime/parallel/rank_threads.h"

namespace ghostd::runtime {

RankThreads::RankThreads(int ranks) : results_(static_cast<size_t>(ranks < 1 ? 1 : ranks)) {
  for (int r = 1; r < ranks; ++r) workers_.emplace_back([this, r] { loop(r); });
}

RankThreads::~RankThreads() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  start_.notify_all();
  for (auto& t : workers_) t.join();
}

Status RankThreads::run(const std::function<Status(int)>& fn) {
  if (workers_.empty()) return fn(0);
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &fn;
    pending_ = static_cast<int>(workers_.size());
    ++generation_;
  }
  start_.notify_all();
  results_[0] = fn(0);
  std::unique_lock<std::mutex> lock(mu_);
  done_.wait(lock, [&] { return pending_ == 0; });
  job_ = nullptr;
  for (const Status& s : results_)
    if (!s.ok()) return s;
  return {};
}

void RankThreads::loop(int rank) {
  uint64_t seen = 0;
  for (;;) {
    const std::function<Status(int)>* job = nullptr;
    {
      std::unique_lock<std::mutex> lock(mu_);
      start_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
    }
    Status st = (*job)(rank);
    std::lock_guard<std::mutex> lock(mu_);
    results_[static_cast<size_t>(rank)] = std::move(st);
    if (--pending_ == 0) done_.notify_one();
  }
}

}  // namespace ghostd::runtime
