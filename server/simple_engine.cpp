#include "server/simple_engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "runtime/sampling.h"

namespace ghostd::server {

namespace rt = ghostd::runtime;
using rt::Clock;

namespace {

constexpr int kBlockSize = 16;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

SimpleEngine::SimpleEngine(rt::Model& model, int max_context)
    : model_(model), max_context_(std::max(max_context, kBlockSize)), thread_([this] { run(); }) {}

SimpleEngine::~SimpleEngine() { shutdown(); }

rt::JobId SimpleEngine::submit(rt::CompletionJob job, rt::JobCallbacks callbacks) {
  std::unique_lock lock(mu_);
  rt::JobId id = next_id_++;
  if (stopping_) {
    lock.unlock();
    rt::JobResult r;
    r.status = rt::JobStatus::kCancelled;
    if (callbacks.on_done) callbacks.on_done(std::move(r));
    return id;
  }
  queue_.push_back({id, std::move(job), std::move(callbacks), Clock::now()});
  cv_.notify_one();
  return id;
}

void SimpleEngine::cancel(rt::JobId id) {
  std::lock_guard lock(mu_);
  if (id == running_ || std::any_of(queue_.begin(), queue_.end(), [id](const Job& j) { return j.id == id; })) {
    cancels_.insert(id);
    cv_.notify_one();
  }
}

bool SimpleEngine::cancelled(rt::JobId id) {
  std::lock_guard lock(mu_);
  return cancels_.erase(id) > 0;
}

void SimpleEngine::shutdown() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void SimpleEngine::run() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) break;
      job = std::move(queue_.front());
      queue_.pop_front();
      running_ = job.id;
    }
    rt::JobResult result = execute(job);
    {
      std::lock_guard lock(mu_);
      running_ = 0;
      cancels_.erase(job.id);
    }
    if (job.callbacks.on_done) job.callbacks.on_done(std::move(result));
  }
  // Shutdown: queued jobs end as cancelled, one on_done each.
  std::deque<Job> left;
  {
    std::lock_guard lock(mu_);
    left.swap(queue_);
  }
  for (auto& j : left) {
    rt::JobResult r;
    r.status = rt::JobStatus::kCancelled;
    if (j.callbacks.on_done) j.callbacks.on_done(std::move(r));
  }
}

rt::JobResult SimpleEngine::execute(Job& j) {
  rt::JobResult r;
  const auto started = Clock::now();
  r.metrics.queue_ms = ms_between(j.submitted, started);
  r.metrics.prompt_tokens = static_cast<int>(j.job.prompt.size());
  r.metrics.max_batch_size = 1;
  auto end = [&](rt::JobStatus status, std::string error = {}) {
    r.status = status;
    r.error = std::move(error);
    r.metrics.generated_tokens = static_cast<int>(r.tokens.size());
    r.metrics.total_ms = ms_between(j.submitted, Clock::now());
    return r;
  };
  const auto& prompt = j.job.prompt;
  const int vocab = model_.config().vocab_size;
  if (prompt.empty()) return end(rt::JobStatus::kFailed, "empty prompt");
  for (int32_t id : prompt) {
    if (id < 0 || id >= vocab) {
      return end(rt::JobStatus::kFailed, "prompt token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                                             std::to_string(vocab - 1) + ")");
    }
  }
  const int max_new = std::max(0, j.job.stop.max_new_tokens);
  if (static_cast<int>(prompt.size()) + max_new > max_context_) {
    return end(rt::JobStatus::kFailed, "prompt of " + std::to_string(prompt.size()) + " tokens plus " +
                                           std::to_string(max_new) + " new tokens exceeds the context of " +
                                           std::to_string(max_context_));
  }
  if (cancelled(j.id)) return end(rt::JobStatus::kCancelled);
  if (Clock::now() >= j.job.deadline) return end(rt::JobStatus::kExpired);
  if (!kv_) {
    const int blocks = (max_context_ + kBlockSize - 1) / kBlockSize;
    auto kv = rt::KvStorage::create(model_.backend(), model_.config(), blocks, kBlockSize);
    if (!kv.ok()) return end(rt::JobStatus::kFailed, kv.error().message);
    kv_.emplace(std::move(*kv));
    block_table_.resize(static_cast<size_t>(blocks));
    for (int i = 0; i < blocks; ++i) block_table_[static_cast<size_t>(i)] = i;
  }

  // Reuse the KV of the longest common prefix with the previous job; at least
  // the last prompt token is fed again for its logits.
  size_t reuse = 0;
  const size_t limit = std::min(cached_.size(), prompt.size() - 1);
  while (reuse < limit && cached_[reuse] == prompt[reuse]) ++reuse;
  r.metrics.reused_tokens = static_cast<int>(reuse);
  cached_.assign(prompt.begin(), prompt.end());

  rt::SequenceInput in{std::span<const int32_t>(prompt).subspan(reuse), static_cast<int32_t>(reuse), block_table_,
                       false};
  if (auto st = model_.forward(std::span(&in, 1), *kv_, logits_); !st.ok()) {
    cached_.clear();
    return end(rt::JobStatus::kFailed, st.message());
  }
  rt::Sampler sampler(j.job.sampling);
  const auto& stops = j.job.stop.stop_token_ids;
  for (int n = 0; n < max_new; ++n) {
    int32_t next = sampler.sample(logits_);
    if (r.tokens.empty()) r.metrics.ttft_ms = ms_between(j.submitted, Clock::now());
    if (std::find(stops.begin(), stops.end(), next) != stops.end()) break;
    r.tokens.push_back(next);
    if (j.callbacks.on_tokens && !j.callbacks.on_tokens({next})) break;
    if (n + 1 == max_new) break;
    if (cancelled(j.id)) return end(rt::JobStatus::kCancelled);
    if (Clock::now() >= j.job.deadline) return end(rt::JobStatus::kExpired);
    cached_.push_back(next);
    rt::SequenceInput step{std::span<const int32_t>(&cached_.back(), 1), static_cast<int32_t>(cached_.size() - 1),
                           block_table_, false};
    if (auto st = model_.forward(std::span(&step, 1), *kv_, logits_); !st.ok()) {
      cached_.clear();
      return end(rt::JobStatus::kFailed, st.message());
    }
  }
  return end(rt::JobStatus::kFinished);
}

}  // namespace ghostd::server
