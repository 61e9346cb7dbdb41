// Test double for the engine: one job at a time on a worker thread, emitting
// a fixed token list with a delay per token; honours cancel and deadlines.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "runtime/engine/engine_api.h"

namespace ghostd::server::testing {

// Thread-safety: thread-safe (submit/cancel from any thread).
class FakeEngine : public ghostd::runtime::EngineInterface {
 public:
  FakeEngine(std::vector<int32_t> tokens, std::chrono::milliseconds per_token)
      : tokens_(std::move(tokens)), per_token_(per_token), worker_([this] { run(); }) {}
  ~FakeEngine() override {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }

  ghostd::runtime::JobId submit(ghostd::runtime::CompletionJob job, ghostd::runtime::JobCallbacks cb) override {
    std::lock_guard lock(mu_);
    auto id = next_id_++;
    last_prompt_ = job.prompt;
    last_hint_ = job.draft_hint;
    last_owner_ = {job.tenant, job.session_id, job.cache_salt};
    queue_.push_back({id, std::move(job), std::move(cb)});
    ++submitted_;
    cv_.notify_all();
    return id;
  }
  void cancel(ghostd::runtime::JobId id) override {
    std::lock_guard lock(mu_);
    cancelled_.insert(id);
    ++cancel_calls_;
  }
  // A device that failed for good, as the real engine reports it.
  std::string fatal_error() const override {
    std::lock_guard lock(mu_);
    return fatal_;
  }
  void set_fatal(std::string why) {
    std::lock_guard lock(mu_);
    fatal_ = std::move(why);
  }
  int submitted() const {
    std::lock_guard lock(mu_);
    return submitted_;
  }
  int cancel_calls() const {
    std::lock_guard lock(mu_);
    return cancel_calls_;
  }
  std::vector<int32_t> last_prompt() const {
    std::lock_guard lock(mu_);
    return last_prompt_;
  }
  std::vector<int32_t> last_hint() const {
    std::lock_guard lock(mu_);
    return last_hint_;
  }
  // The last job's tenant, session and cache salt.
  struct Owner {
    std::string tenant;
    uint64_t session = 0;
    std::string cache_salt;
  };
  Owner last_owner() const {
    std::lock_guard lock(mu_);
    return last_owner_;
  }

 private:
  struct Job {
    ghostd::runtime::JobId id;
    ghostd::runtime::CompletionJob job;
    ghostd::runtime::JobCallbacks cb;
  };
  bool is_cancelled(ghostd::runtime::JobId id) {
    std::lock_guard lock(mu_);
    return cancelled_.count(id) > 0;
  }
  void run() {
    using namespace ghostd::runtime;
    for (;;) {
      Job j;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;
        j = std::move(queue_.front());
        queue_.pop_front();
      }
      auto start = Clock::now();
      JobResult r;
      r.metrics.prompt_tokens = static_cast<int>(j.job.prompt.size());
      r.status = JobStatus::kFinished;
      // Like the real engine, the output starts with the token-healing bytes
      // (one byte per token with the test byte tokenizer).
      std::vector<int32_t> out;
      for (unsigned char c : j.job.required_prefix) out.push_back(c);
      out.insert(out.end(), tokens_.begin(), tokens_.end());
      for (size_t i = 0; i < out.size() && static_cast<int>(i) < j.job.stop.max_new_tokens; ++i) {
        if (is_cancelled(j.id) || stop_) {
          r.status = JobStatus::kCancelled;
          break;
        }
        std::this_thread::sleep_for(per_token_);
        if (Clock::now() > j.job.deadline) {
          r.status = JobStatus::kExpired;
          break;
        }
        r.tokens.push_back(out[i]);
        if (i == 0) r.metrics.ttft_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
        if (!j.cb.on_tokens({out[i]})) break;
      }
      r.metrics.generated_tokens = static_cast<int>(r.tokens.size());
      r.metrics.total_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
      r.metrics.max_batch_size = 1;
      j.cb.on_done(std::move(r));
    }
  }

  std::vector<int32_t> tokens_;
  std::chrono::milliseconds per_token_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  std::set<ghostd::runtime::JobId> cancelled_;
  std::vector<int32_t> last_prompt_;
  std::vector<int32_t> last_hint_;
  Owner last_owner_;
  ghostd::runtime::JobId next_id_ = 1;
  std::string fatal_;
  int submitted_ = 0;
  int cancel_calls_ = 0;
  std::atomic<bool> stop_{false};
  std::thread worker_;
};

}  // namespace ghostd::server::testing
