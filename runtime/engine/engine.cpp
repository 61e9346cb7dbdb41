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

int rows_of(const StepSequence& s) {
  return s.all_logits ? static_cast<int>(s.tokens.size()) : 1;
}

}  // namespace

Result<std::unique_ptr<Engine>> Engine::create(Model& model, EngineOptions options) {
  if (options.block_size <= 0) {
    return Error{"engine: block_size must be positive, got " + std::to_string(options.block_size)};
  }
  Model* draft = options.speculate ? options.draft_model : nullptr;
  if (draft == &model) return Error{"engine: the draft model is the target model itself"};
  if (draft != nullptr && draft->config().vocab_size != model.config().vocab_size) {
    return Error{"engine: the draft model's vocabulary (" + std::to_string(draft->config().vocab_size) +
                 " tokens) differs from the target's (" + std::to_string(model.config().vocab_size) +
                 "); a draft must share the target's tokenizer"};
  }
  if (draft != nullptr && &draft->backend() != &model.backend()) {
    return Error{"engine: the draft model must run on the target's backend"};
  }
  if (!model.try_attach()) {
    return Error{"engine: the model is driven by another engine; shut that engine down first "
                 "(a model holds one engine's step workspaces)"};
  }
  struct Detach {
    Model* m;
    ~Detach() {
      if (m) m->detach();
    }
  } detach_target{&model}, detach_draft{nullptr};
  if (draft != nullptr) {
    if (!draft->try_attach()) return Error{"engine: the draft model is driven by another engine"};
    detach_draft.m = draft;
  }
  Backend& backend = model.backend();  // rank 0's under tensor parallelism
  // Workspaces first, for the largest step the scheduler can plan; the KV
  // budget is what the device has left after them.
  const ModelConfig& mc = model.config();
  SchedulerConfig& sc = options.scheduler;
  if (sc.max_batch_tokens <= 0 || sc.max_batch_seqs <= 0) {
    return Error{"engine: max_batch_tokens and max_batch_seqs must be positive"};
  }
  sc.max_draft_tokens = std::min(sc.max_draft_tokens, std::max(0, options.speculation.max_draft));
  options.speculation.max_draft = sc.max_draft_tokens;
  int64_t positions = mc.max_position_embeddings > 0 ? mc.max_position_embeddings : 1 << 16;
  if (draft != nullptr && draft->config().max_position_embeddings > 0)
    positions = std::min<int64_t>(positions, draft->config().max_position_embeddings);
  const int64_t blocks_per_seq = (positions + options.block_size - 1) / options.block_size;
  StepCapacity cap;
  cap.max_tokens = sc.max_batch_tokens;
  cap.max_seqs = sc.max_batch_seqs;
  cap.max_table_entries = static_cast<int>(std::min<int64_t>(int64_t{sc.max_batch_seqs} * blocks_per_seq, 1 << 26));
  cap.max_logit_rows = static_cast<int>(std::min<int64_t>(
      sc.max_batch_tokens, int64_t{sc.max_batch_seqs} * (1 + std::max(0, sc.max_draft_tokens))));
  if (Status st = model.reserve(cap); !st.ok()) return Error{"engine: " + st.message()};
  if (draft != nullptr) {
    // The mirror runs the target's batches (one logits row per sequence); a
    // round feeds one token per sequence.
    StepCapacity dcap = cap;
    dcap.max_logit_rows = std::min(cap.max_tokens, cap.max_seqs);
    if (Status st = draft->reserve(dcap); !st.ok()) return Error{"engine: draft model: " + st.message()};
  }
  size_t budget = options.kv_memory_bytes;
  if (budget == 0) {
    const size_t free = model.free_memory();  // the least over the ranks' devices
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
  // A block id holds both models' KV: the budget pays for both. Under
  // tensor parallelism it is each device's budget (a rank holds its own KV
  // heads; the draft runs on rank 0's device).
  size_t per_block = model.kv_bytes_per_block(options.block_size);
  if (draft != nullptr) per_block += draft->kv_bytes_per_block(options.block_size);
  const int num_blocks = BlockPool::blocks_for_budget(budget, per_block);
  if (num_blocks <= 0) {
    return Error{"engine: a KV budget of " + std::to_string(budget) +
                 " bytes holds no KV block (one block of " + std::to_string(options.block_size) +
                 " tokens takes " + std::to_string(per_block) + " bytes)"};
  }
  const bool graphs = options.step_graphs > 0 || (options.step_graphs < 0 && backend.capture_pays());
  // The scratch block takes padding rows of captured steps.
  auto kv = KvStorage::create(model, num_blocks, options.block_size, /*scratch_block=*/graphs);
  if (!kv) return Error{"engine: " + kv.error().message};
  std::optional<KvStorage> draft_kv;
  if (draft != nullptr) {
    auto dkv = KvStorage::create(*draft, num_blocks, options.block_size, graphs);
    if (!dkv) return Error{"engine: draft model: " + dkv.error().message};
    draft_kv = std::move(*dkv);
    draft->set_step_graphs(graphs);
  }
  model.set_step_graphs(graphs);
  options.draft_model = draft;
  detach_target.m = detach_draft.m = nullptr;  // the engine detaches at shutdown
  return std::unique_ptr<Engine>(new Engine(model, std::move(options), num_blocks, std::move(*kv),
                                            std::move(draft_kv), cap.max_logit_rows));
}

Engine::Engine(Model& model, EngineOptions options, int num_blocks, KvStorage kv,
               std::optional<KvStorage> draft_kv, int max_logit_rows)
    : model_(model),
      draft_(options.draft_model),
      options_(std::move(options)),
      spec_(options_.speculation, draft_ != nullptr),
      pool_(num_blocks, options_.block_size),
      cache_(pool_, options_.prefix),
      scheduler_(options_.scheduler, pool_, &cache_),
      kv_(std::move(kv)),
      draft_kv_(std::move(draft_kv)) {
  const int max_seqs = options_.scheduler.max_batch_seqs;
  inputs_.reserve(static_cast<size_t>(max_seqs));
  draft_inputs_.reserve(static_cast<size_t>(max_seqs));
  draft_ids_.assign(static_cast<size_t>(max_seqs), 0);
  copies_.reserve(static_cast<size_t>(max_seqs) * 2);
  ids_.assign(static_cast<size_t>(max_logit_rows), 0);
  heal_scratch_.reserve(static_cast<size_t>(model_.config().vocab_size));
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
  if (stopping_ || cannot_heal || !fatal_.empty()) {
    const std::string fatal = fatal_;
    lock.unlock();
    JobResult r;
    r.status = stopping_ ? JobStatus::kCancelled : JobStatus::kFailed;
    r.error = !fatal.empty() ? fatal
              : cannot_heal  ? "engine: a job with required_prefix needs EngineOptions::token_bytes"
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

std::string Engine::fatal_error() const {
  std::lock_guard lock(mu_);
  return fatal_;
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
  model_.detach();
  if (options_.draft_model != nullptr) options_.draft_model->detach();
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
      const bool speculate = options_.speculate && p.job.use_draft && options_.speculation.max_draft > 0;
      active_.emplace(p.id, Active{std::move(p.callbacks), std::move(sampler), p.job.deadline, speculate,
                                   p.job.required_prefix});
      if (speculate) spec_.add_job(p.id, p.job);
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

void Engine::enter_fatal(const std::string& why) {
  const std::string message = "engine: the device failed; no job can run until ghostd restarts: " + why;
  if (local_stats_.fatal_error.empty()) spdlog::error("{}", message);
  local_stats_.fatal_error = message;
  {
    std::lock_guard lock(mu_);
    fatal_ = message;
    stats_.fatal_error = message;  // before any on_done: callers may look at once
  }
  fail_all(message);
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
    spec_.end_job(e.id, e.result.tokens, e.result.metrics);
    {
      std::lock_guard lock(mu_);
      --stats_.active_jobs;
    }
    call_on_done(callbacks, e.id, std::move(e.result));
  }
}

bool Engine::samples_on_host(const StepSequence& seq) const {
  if (!seq.samples) return false;
  const Active& job = active_.at(seq.id);
  return !job.heal.empty() || !job.sampler.greedy();
}

Status Engine::forward(std::span<const StepSequence> seqs, int row_base, int seq_base) {
  try {
    // A plan beyond the step capacity fails here (then runs one by one).
    int rows_needed = 0;
    for (const StepSequence& q : seqs) rows_needed += rows_of(q);
    if (static_cast<size_t>(seq_base) + seqs.size() > inputs_.capacity() ||
        static_cast<size_t>(row_base + rows_needed) > ids_.size())
      return Error{"engine: a step of " + std::to_string(seqs.size()) + " sequences and " +
                   std::to_string(rows_needed) + " logits rows is beyond the engine's step capacity"};
    const auto t0 = Clock::now();
    int fed = 0;
    inputs_.clear();
    for (const StepSequence& s : seqs) {
      inputs_.push_back({s.tokens, s.start_pos, s.block_table, s.all_logits, s.tree_parents});
      fed += static_cast<int>(s.tokens.size());
    }
    GHOSTD_TRY_STATUS(model_.prepare(inputs_, kv_));
    GHOSTD_TRY_STATUS(model_.run(kv_));
    const int rows = model_.prepared_logit_rows();
    GHOSTD_TRY_STATUS(model_.argmax(std::span<int32_t>(ids_).subspan(static_cast<size_t>(row_base), static_cast<size_t>(rows))));
    // argmax synchronized: this is the step's device time (the speculation
    // policy's cost per fed token comes from it).
    spec_.observe_step(fed, std::chrono::duration<double>(Clock::now() - t0).count());
    const size_t vocab = static_cast<size_t>(model_.config().vocab_size);
    int row = 0;
    for (size_t i = 0; i < seqs.size(); ++i) {
      const int n = rows_of(seqs[i]);
      if (samples_on_host(seqs[i])) {
        const size_t need = static_cast<size_t>(row_base + row + n) * vocab;
        if (host_logits_.size() < need) host_logits_.resize(need);
        GHOSTD_TRY_STATUS(model_.download_logits(row, n, host_logits_.data() + static_cast<size_t>(row_base + row) * vocab));
      }
      row += n;
    }
    return {};
  } catch (const std::exception& e) {
    return Error{std::string("forward threw: ") + e.what()};
  }
}

std::vector<int32_t> Engine::sample(const StepSequence& seq, size_t index, Active& job, const int32_t* ids,
                                    const float* rows) {
  const size_t vocab = static_cast<size_t>(model_.config().vocab_size);
  if (seq.num_draft == 0) {
    // A decode, or the last prefill chunk (whose one row is its last token).
    if (!job.heal.empty()) return {sample_healing(job, rows)};
    if (job.sampler.greedy()) return {ids[0]};
    return {job.sampler.sample(std::span<const float>(rows, vocab))};
  }
  const auto drafts = std::span<const int32_t>(seq.tokens).subspan(1);
  const size_t k = drafts.size();
  if (!seq.tree_parents.empty()) {
    DraftTree tree;
    tree.tokens.assign(drafts.begin(), drafts.end());
    for (size_t i = 1; i < seq.tree_parents.size(); ++i) tree.parents.push_back(seq.tree_parents[i] - 1);
    std::vector<int32_t> path;
    if (job.sampler.greedy()) return verify_tree_greedy(tree, std::span<const int32_t>(ids, k + 1), path);
    std::vector<float>& p = probs_scratch_;
    p.resize((k + 1) * vocab);
    std::vector<float> row_probs;
    for (size_t i = 0; i <= k; ++i) {
      job.sampler.probabilities(std::span<const float>(rows + i * vocab, vocab), row_probs);
      std::copy(row_probs.begin(), row_probs.end(), p.begin() + static_cast<std::ptrdiff_t>(i * vocab));
    }
    return verify_tree_sampled(tree, p, vocab, job.sampler, residual_scratch_, path);
  }
  if (job.sampler.greedy()) return verify_greedy(drafts, std::span<const int32_t>(ids, k + 1));
  // Rejection sampling over the target's processed distributions; a model
  // draft brings its own, the other proposers are point masses.
  std::vector<float>& p = probs_scratch_;
  p.resize((k + 1) * vocab);
  std::vector<float> row_probs;
  for (size_t i = 0; i <= k; ++i) {
    job.sampler.probabilities(std::span<const float>(rows + i * vocab, vocab), row_probs);
    std::copy(row_probs.begin(), row_probs.end(), p.begin() + static_cast<std::ptrdiff_t>(i * vocab));
  }
  std::span<const float> q;
  if (job.draft_source == DraftSource::kModel && index < draft_probs_.size() &&
      draft_probs_[index].size() == k * vocab)
    q = draft_probs_[index];
  return verify_sampled(drafts, p, q, vocab, job.sampler, residual_scratch_);
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

  // Copy-on-write: every copy of the step, every layer, in one ordered op.
  // Whole blocks: slots past n_tokens are overwritten before they are read.
  if (!plan.copies.empty()) {
    copies_.clear();
    for (const BlockCopy& c : plan.copies) copies_.push_back({c.src, c.dst});
    model_.copy_kv_blocks(kv_, copies_);
    if (draft_ != nullptr && draft_kv_) draft_->copy_kv_blocks(*draft_kv_, copies_);  // none once the draft is off
  }
  draft_rounds(plan);

  Status st = forward(plan.seqs, 0, 0);
  size_t num_failed = 0;
  if (!st.ok()) {
    // A sticky device error: retrying would fail every job one by one, and
    // every later step too. End them all with the reason, once.
    if (std::string fatal = model_.fatal_error(); !fatal.empty()) {
      enter_fatal(fatal);
      publish_stats();
      return;
    }
    // Retry each sequence alone (its slots are simply rewritten; the copies
    // are done), so one bad request cannot fail the others in its batch. The
    // survivors' outputs land where a batch of just them would put them.
    ++local_stats_.failed_forwards;
    const bool batched = plan.seqs.size() > 1;
    std::vector<StepSequence> ok;
    std::vector<EndedJob> ended;
    int row = 0;
    for (StepSequence& s : plan.seqs) {
      Status alone = batched ? forward(std::span<const StepSequence>(&s, 1), row, static_cast<int>(ok.size())) : st;
      if (alone.ok()) {
        row += rows_of(s);
        ok.push_back(std::move(s));
        continue;
      }
      StepPlan single;
      single.seqs.push_back(std::move(s));
      spdlog::warn("engine: job {} failed: {}", single.seqs[0].id, alone.message());
      auto e =
          scheduler_.fail_step(single, "engine: forward failed: " + alone.message(), Clock::now());
      num_failed += e.size();
      ended.insert(ended.end(), std::make_move_iterator(e.begin()),
                   std::make_move_iterator(e.end()));
    }
    plan.seqs = std::move(ok);
    draft_probs_.clear();  // indices moved; sampled model drafts verify as point masses
    finish(ended);
  }
  mirror(plan.seqs);

  // Sample: device argmax ids for greedy rows and verify, host rows otherwise.
  const size_t vocab = static_cast<size_t>(model_.config().vocab_size);
  std::vector<std::vector<int32_t>> sampled(plan.seqs.size());
  size_t row = 0;
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    const StepSequence& s = plan.seqs[i];
    if (s.samples) {
      Active& job = active_.at(s.id);
      const float* rows = samples_on_host(s) ? host_logits_.data() + row * vocab : nullptr;
      sampled[i] = sample(s, i, job, ids_.data() + row, rows);
      if (s.num_draft > 0) {
        const int accepted = static_cast<int>(sampled[i].size()) - 1;
        GuessOutcome guesses = GuessOutcome::chain(s.num_draft, accepted);
        if (!s.tree_parents.empty()) {
          std::vector<int32_t> path;
          fed_tree_path(s.tree_parents, s.tokens, std::span<const int32_t>(sampled[i]).first(static_cast<size_t>(accepted)),
                        path);
          guesses = tree_outcome(s.tree_parents, path);
          ++local_stats_.tree_verifies;
        }
        spec_.record(s.id, job.draft_source, s.num_draft, accepted, guesses);
        DraftCounts& c = local_stats_.drafts[static_cast<int>(job.draft_source)];
        c.proposed += s.num_draft;
        c.accepted += accepted;
        ++c.verifies;
      }
    }
    row += static_cast<size_t>(rows_of(s));
  }
  move_tree_paths(plan.seqs, sampled);

  CommitResult cr = scheduler_.commit(plan, sampled, Clock::now());
  for (const CommitResult::Update& u : cr.updates) {
    auto it = active_.find(u.id);
    if (it != active_.end() && !call_on_tokens(it->second.callbacks, u.id, u.new_tokens)) {
      scheduler_.stop(u.id);
    }
  }
  finish(cr.ended);
  if (draft_ != nullptr && !spec_.model_pays()) {
    // Measured, not assumed: on a compute-bound backend a small draft's
    // rounds and mirror can cost more than its accepted tokens save.
    spdlog::info("engine: the draft model does not pay on {} (acceptance {:.2f}, step {:.2f} ms + {:.3f} ms per "
                 "token, draft round {:.3f} ms); speculating without it",
                 model_.backend().name(), spec_.engine_acceptance(DraftSource::kModel),
                 spec_.target_cost().base() * 1e3, spec_.target_cost().per_token() * 1e3,
                 spec_.draft_cost().predict(1) * 1e3);
    local_stats_.draft_off = true;
    draft_ = nullptr;
    spec_.drop_model();
  }
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

void Engine::publish_stats() {
  local_stats_.captured_steps = model_.captured_steps();
  local_stats_.replayed_steps = static_cast<uint64_t>(model_.replayed_steps());
  local_stats_.free_blocks = pool_.num_free();
  local_stats_.cached_blocks = cache_.num_cached_blocks();
  std::lock_guard lock(mu_);
  const int active = stats_.active_jobs;
  stats_ = local_stats_;
  stats_.active_jobs = active;
}

}  // namespace ghostd::runtime
