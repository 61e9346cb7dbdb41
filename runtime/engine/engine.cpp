#include "runtime/engine/engine.h"

#include <limits>

#include <algorithm>
#include <exception>
#include <utility>

#include <spdlog/spdlog.h>

namespace ghostd::runtime {

namespace {

// Callbacks are user code: an exception from one must not cross the engine
// thread (STYLE.md habit 10) nor keep the job from ending.
bool call_on_tokens(const JobCallbacks& cb, JobId id, const std::vector<int32_t>& tokens) {
  if (!cb.on_tokens) return true;
  try {
    return cb.on_tokens(tokens);
  } catch (const std::exception& e) {
    spdlog::warn("engine: on_tokens of job {} threw: {}; stopping the job", id, e.what());
  } catch (...) {
    spdlog::warn("engine: on_tokens of job {} threw; stopping the job", id);
  }
  return false;
}

void call_on_done(JobCallbacks& cb, JobId id, JobResult result) {
  if (!cb.on_done) return;
  try {
    cb.on_done(std::move(result));
  } catch (const std::exception& e) {
    spdlog::warn("engine: on_done of job {} threw: {}", id, e.what());
  } catch (...) {
    spdlog::warn("engine: on_done of job {} threw", id);
  }
}

std::vector<SequenceInput> to_inputs(std::span<const StepSequence> seqs) {
  std::vector<SequenceInput> in;
  in.reserve(seqs.size());
  for (const StepSequence& s : seqs) {
    in.push_back({s.tokens, s.start_pos, s.block_table, s.all_logits});
  }
  return in;
}

int rows_of(const StepSequence& s) {
  return s.all_logits ? static_cast<int>(s.tokens.size()) : 1;
}

}  // namespace

Result<std::unique_ptr<Engine>> Engine::create(Model& model, EngineOptions options) {
  if (options.block_size <= 0) {
    return Error{"engine: block_size must be positive, got " + std::to_string(options.block_size)};
  }
  Backend& backend = model.backend();
  size_t budget = options.kv_memory_bytes;
  if (budget == 0) {
    const size_t free = backend.free_memory();
    if (free == 0) {
      budget = kDefaultCpuKvBytes;
    } else {
      // Leave room for the forward's workspace and the allocator.
      const size_t margin = std::max(kGpuMemoryMargin, free / 10);
      if (free <= margin) {
        return Error{"engine: " + backend.name() + " has " + std::to_string(free >> 20) +
                     " MiB free, less than the " + std::to_string(margin >> 20) +
                     " MiB margin kept outside the KV cache; set kv_memory_bytes"};
      }
      budget = free - margin;
    }
  }
  const size_t per_block = KvStorage::bytes_per_block(model.config(), options.block_size);
  const int num_blocks = BlockPool::blocks_for_budget(budget, per_block);
  if (num_blocks <= 0) {
    return Error{"engine: a KV budget of " + std::to_string(budget) +
                 " bytes holds no KV block (one block of " + std::to_string(options.block_size) +
                 " tokens takes " + std::to_string(per_block) + " bytes)"};
  }
  auto kv = KvStorage::create(backend, model.config(), num_blocks, options.block_size);
  if (!kv) return Error{"engine: " + kv.error().message};
  return std::unique_ptr<Engine>(new Engine(model, std::move(options), num_blocks, std::move(*kv)));
}

Engine::Engine(Model& model, EngineOptions options, int num_blocks, KvStorage kv)
    : model_(model),
      options_(std::move(options)),
      pool_(num_blocks, options_.block_size),
      cache_(pool_, options_.prefix),
      scheduler_(options_.scheduler, pool_, &cache_),
      kv_(std::move(kv)) {
  lookup_.max_draft = std::min(options_.max_draft_tokens, options_.scheduler.max_draft_tokens);
  local_stats_.num_blocks = pool_.num_blocks();
  local_stats_.free_blocks = pool_.num_free();
  stats_ = local_stats_;
  thread_ = std::thread([this] { run(); });
}

Engine::~Engine() {
  (void)shutdown();
}

JobId Engine::submit(CompletionJob job, JobCallbacks callbacks) {
  std::unique_lock lock(mu_);
  const JobId id = next_id_++;
  const bool cannot_heal = !job.required_prefix.empty() && options_.token_bytes.empty();
  if (stopping_ || cannot_heal) {
    lock.unlock();
    JobResult r;
    r.status = cannot_heal ? JobStatus::kFailed : JobStatus::kCancelled;
    r.error = cannot_heal ? "engine: a job with required_prefix needs EngineOptions::token_bytes"
                          : "engine: shut down";
    r.metrics.prompt_tokens = static_cast<int>(job.prompt.size());
    call_on_done(callbacks, id, std::move(r));
    return id;
  }
  inbox_.push_back({id, std::move(job), std::move(callbacks), Clock::now()});
  ++stats_.active_jobs;
  lock.unlock();
  cv_.notify_one();
  return id;
}

void Engine::cancel(JobId id) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    cancels_.push_back(id);
  }
  cv_.notify_one();
}

EngineStats Engine::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

Status Engine::shutdown() {
  if (std::this_thread::get_id() == thread_.get_id()) {
    return Error{"engine: shutdown() called from an engine callback (it would join itself)"};
  }
  {
    std::lock_guard lock(mu_);
    if (stopped_) return shutdown_status_;
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(mu_);
  stopped_ = true;
  return shutdown_status_;
}

std::optional<Clock::time_point> Engine::nearest_deadline() const {
  std::optional<Clock::time_point> t;
  for (const auto& [id, a] : active_) {
    if (a.deadline != Clock::time_point::max() && (!t || a.deadline < *t)) t = a.deadline;
  }
  return t;
}

void Engine::run() {
  while (true) {
    std::vector<Pending> inbox;
    std::vector<JobId> cancels;
    bool stopping = false;
    {
      std::unique_lock lock(mu_);
      auto has_input = [&] { return !inbox_.empty() || !cancels_.empty() || stopping_; };
      if (scheduler_.num_jobs() == 0) {
        cv_.wait(lock, has_input);
      } else if (blocked_) {
        // Nothing can run until something changes or a deadline passes.
        if (auto d = nearest_deadline()) {
          cv_.wait_until(lock, *d, has_input);
        } else {
          cv_.wait(lock, has_input);
        }
      }
      inbox.swap(inbox_);
      cancels.swap(cancels_);
      stopping = stopping_;
    }
    for (Pending& p : inbox) {
      Sampler sampler(p.job.sampling);
      const bool draft = options_.prompt_lookup_drafts && p.job.use_draft && sampler.greedy() &&
                         lookup_.max_draft > 0;
      active_.emplace(p.id, Active{std::move(p.callbacks), std::move(sampler), p.job.deadline, draft,
                                   p.job.required_prefix});
      scheduler_.submit(p.id, p.job, p.submitted);
    }
    for (JobId id : cancels) scheduler_.cancel(id);
    blocked_ = false;
    if (stopping) break;
    try {
      step();
    } catch (const std::exception& e) {
      // Bookkeeping threw (e.g. out of host memory): end every job rather
      // than take the daemon down; the engine keeps accepting work.
      spdlog::error("engine: step failed: {}; failing all jobs", e.what());
      fail_all(std::string("engine: step failed: ") + e.what());
    }
  }

  // Shutdown: every job still here ends once, then all KV must be free.
  std::vector<EndedJob> ended = scheduler_.drain(JobStatus::kCancelled, Clock::now());
  finish(ended);
  cache_.clear();
  Status status = pool_.validate();
  if (status.ok() && pool_.num_free() != pool_.num_blocks()) {
    status = Error{"engine: " + std::to_string(pool_.num_used()) +
                   " KV blocks still in use after shutdown (leak)"};
  }
  if (status.ok() && !active_.empty()) {
    status = Error{"engine: " + std::to_string(active_.size()) + " jobs never ended"};
  }
  publish_stats();
  std::lock_guard lock(mu_);
  shutdown_status_ = status;
}

void Engine::fail_all(const std::string& message) {
  std::vector<EndedJob> ended = scheduler_.drain(JobStatus::kFailed, Clock::now());
  for (EndedJob& e : ended) {
    if (e.result.status == JobStatus::kFailed && e.result.error.empty()) e.result.error = message;
  }
  finish(ended);
}

void Engine::finish(std::vector<EndedJob>& ended) {
  for (EndedJob& e : ended) {
    auto it = active_.find(e.id);
    if (it == active_.end()) continue;  // cannot happen: the scheduler ends a job once
    JobCallbacks callbacks = std::move(it->second.callbacks);
    active_.erase(it);
    {
      std::lock_guard lock(mu_);
      --stats_.active_jobs;
    }
    call_on_done(callbacks, e.id, std::move(e.result));
  }
}

Status Engine::forward(const StepPlan& plan, std::vector<float>& logits) {
  try {
    std::vector<SequenceInput> in = to_inputs(plan.seqs);
    return model_.forward(in, kv_, logits);
  } catch (const std::exception& e) {
    return Error{std::string("forward threw: ") + e.what()};
  }
}

std::vector<int32_t> Engine::sample(const StepSequence& seq, Active& job, const float* rows) {
  const size_t vocab = static_cast<size_t>(model_.config().vocab_size);
  if (seq.num_draft == 0) {
    // A decode, or the last prefill chunk (whose one row is its last token).
    if (!job.heal.empty()) return {sample_healing(job, rows)};
    return {job.sampler.sample(std::span<const float>(rows, vocab))};
  }
  // Verify (greedy only): row i predicts the token after feed position i, so
  // draft i+1 is accepted while it equals row i's argmax. The first mismatch
  // (or row k) gives the model's own token: identical to plain greedy decoding.
  std::vector<int32_t> out;
  for (int i = 0; i <= seq.num_draft; ++i) {
    const int32_t t = argmax(std::span<const float>(rows + i * vocab, vocab));
    out.push_back(t);
    if (i == seq.num_draft || t != seq.tokens[static_cast<size_t>(i) + 1]) break;
  }
  return out;
}

int32_t Engine::sample_healing(Active& job, const float* row) {
  // Only tokens consistent with the bytes still required: those that start
  // with them, or that are a prefix of them. Masking keeps greedy exact: the
  // choice is the argmax over the allowed tokens, whatever the batch.
  const size_t vocab = static_cast<size_t>(model_.config().vocab_size);
  std::vector<float>& masked = heal_scratch_;
  masked.assign(row, row + vocab);
  const std::string& need = job.heal;
  const size_t known = std::min(vocab, options_.token_bytes.size());
  for (size_t id = 0; id < vocab; ++id) {
    const std::string* b = id < known ? &options_.token_bytes[id] : nullptr;
    const bool ok = b && !b->empty() &&
                    (b->size() >= need.size() ? b->compare(0, need.size(), need) == 0
                                              : need.compare(0, b->size(), *b) == 0);
    if (!ok) masked[id] = -std::numeric_limits<float>::infinity();
  }
  const int32_t t = job.sampler.sample(masked);
  const std::string& b = options_.token_bytes[static_cast<size_t>(t)];
  job.heal = b.size() >= need.size() ? std::string() : need.substr(b.size());
  return t;
}

void Engine::step() {
  StepPlan plan = scheduler_.schedule(Clock::now());
  const bool ended_any = !plan.ended.empty();
  finish(plan.ended);
  if (plan.empty()) {
    blocked_ = scheduler_.num_jobs() > 0 && !ended_any;
    publish_stats();
    return;
  }

  const int num_layers = model_.config().num_layers;
  for (const BlockCopy& c : plan.copies) {
    // Whole blocks: slots past n_tokens are overwritten before they are read.
    for (int l = 0; l < num_layers; ++l) {
      model_.backend().copy_kv_block(kv_.layer(l), c.src, c.dst, kv_.block_size(), kv_.kv_dim());
    }
  }

  Status st = forward(plan, logits_);
  size_t num_failed = 0;
  if (!st.ok()) {
    // Retry each sequence alone (its slots are simply rewritten; the copies
    // are done), so one bad request cannot fail the others in its batch.
    ++local_stats_.failed_forwards;
    const bool batched = plan.seqs.size() > 1;
    std::vector<float> all, one;
    std::vector<StepSequence> ok;
    std::vector<EndedJob> ended;
    for (StepSequence& s : plan.seqs) {
      StepPlan single;
      single.seqs.push_back(std::move(s));
      Status alone = batched ? forward(single, one) : st;
      if (alone.ok()) {
        all.insert(all.end(), one.begin(), one.end());
        ok.push_back(std::move(single.seqs[0]));
        continue;
      }
      spdlog::warn("engine: job {} failed: {}", single.seqs[0].id, alone.message());
      auto e =
          scheduler_.fail_step(single, "engine: forward failed: " + alone.message(), Clock::now());
      num_failed += e.size();
      ended.insert(ended.end(), std::make_move_iterator(e.begin()),
                   std::make_move_iterator(e.end()));
    }
    plan.seqs = std::move(ok);
    logits_ = std::move(all);
    finish(ended);
  }

  // Sample.
  const size_t vocab = static_cast<size_t>(model_.config().vocab_size);
  std::vector<std::vector<int32_t>> sampled(plan.seqs.size());
  size_t row = 0;
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    const StepSequence& s = plan.seqs[i];
    if (s.samples) sampled[i] = sample(s, active_.at(s.id), logits_.data() + row * vocab);
    row += static_cast<size_t>(rows_of(s));
  }

  CommitResult cr = scheduler_.commit(plan, sampled, Clock::now());
  for (const CommitResult::Update& u : cr.updates) {
    auto it = active_.find(u.id);
    if (it != active_.end() && !call_on_tokens(it->second.callbacks, u.id, u.new_tokens)) {
      scheduler_.stop(u.id);
    }
  }
  finish(cr.ended);
  propose_drafts(plan);

  ++local_stats_.steps;
  local_stats_.paused_jobs += plan.paused.size();
  local_stats_.evicted_jobs += plan.evicted.size();
  local_stats_.tokens_fed += static_cast<uint64_t>(plan.num_tokens);
  local_stats_.prefill_tokens += static_cast<uint64_t>(plan.num_prefill_tokens);
  local_stats_.max_batch_seqs =
      std::max(local_stats_.max_batch_seqs, static_cast<int>(plan.seqs.size() + num_failed));
  if (options_.validate_each_step && local_stats_.accounting_error.empty()) {
    if (Status v = scheduler_.validate(); !v.ok()) {
      spdlog::error("engine: accounting check failed: {}", v.message());
      local_stats_.accounting_error = v.message();
    }
  }
  publish_stats();
}

void Engine::propose_drafts(const StepPlan& plan) {
  for (const StepSequence& s : plan.seqs) {
    if (!s.samples) continue;
    auto it = active_.find(s.id);
    // No drafts while token healing still constrains the next token.
    if (it == active_.end() || !it->second.draft || !it->second.heal.empty()) continue;
    const std::vector<int32_t>* tokens = scheduler_.tokens(s.id);
    if (tokens == nullptr) continue;
    std::vector<int32_t> draft = prompt_lookup_draft(*tokens, lookup_);
    if (!draft.empty()) scheduler_.set_draft(s.id, std::move(draft));
  }
}

void Engine::publish_stats() {
  local_stats_.free_blocks = pool_.num_free();
  local_stats_.cached_blocks = cache_.num_cached_blocks();
  std::lock_guard lock(mu_);
  const int active = stats_.active_jobs;
  stats_ = local_stats_;
  stats_.active_jobs = active;
}

}  // namespace ghostd::runtime
