// The engine: one thread that owns the model's backend state and KV storage
// (DESIGN.md invariant 2) and drives the Scheduler step by step: schedule,
// block copies, the draft model's rounds, one batched forward, sampling and
// verify of the speculation stage's drafts, commit, streaming.
//
// With a draft model, both models share the block pool: a block id holds the
// target's and the draft's KV (each in its own KvStorage), the KV budget pays
// for both, copy-on-write copies both, and the draft runs every batch the
// target runs (the "mirror"), so every computed (and so every cached) block
// has both models' KV. A job's model drafts are made at the start of the
// step that verifies them, in the blocks the scheduler allocated for them:
// round r feeds token r of [last, d1..dk] and yields d(r+1).
//
// Other threads only touch a mutex-guarded inbox (submit, cancel, shutdown);
// the engine thread sleeps on a condition variable when it has nothing to run
// and wakes on submit/cancel/shutdown or at the nearest job deadline.
//
// Failure isolation (invariant 7): when a batched forward fails, each of its
// sequences is retried alone, so only the sequences that fail by themselves
// (e.g. a token id outside the vocabulary) end as failed.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "runtime/engine/engine_api.h"
#include "runtime/engine/kv_cache.h"
#include "runtime/model/model.h"
#include "runtime/engine/prefix_cache.h"
#include "runtime/speculative/speculator.h"
#include "runtime/speculative/verify.h"
#include "runtime/core/result.h"
#include "runtime/engine/sampling.h"
#include "runtime/engine/scheduler.h"

namespace ghostd::runtime {

struct EngineOptions {
  // KV budget. 0: free device memory minus a margin on a GPU backend,
  // kDefaultCpuKvBytes on the CPU.
  size_t kv_memory_bytes = 0;
  int block_size = 16;
  SchedulerConfig scheduler;
  PrefixCache::Config prefix;
  // Speculative decoding for jobs with use_draft (speculation.h).
  bool speculate = true;
  SpeculationOptions speculation;
  // A smaller model with the target's vocabulary; proposes drafts. Must
  // outlive the engine; attached like the target (one engine at a time).
  Model* draft_model = nullptr;
  // Decode steps captured per batch-size bucket and replayed (CUDA graphs):
  // -1 where the backend says it pays (a GPU), 0 off, 1 on (the CPU emulates
  // capture, so tests run this path everywhere).
  int step_graphs = -1;
  // Checks scheduler/pool/cache accounting after every step (tests, debugging);
  // the first failure is kept in EngineStats::accounting_error.
  bool validate_each_step = false;
  // The raw bytes of every token id (Tokenizer::token_bytes), for jobs with a
  // required_prefix (token healing); such jobs fail without it.
  std::vector<std::string> token_bytes;
};

// A snapshot of engine counters, refreshed after every step.
struct EngineStats {
  uint64_t steps = 0;
  uint64_t tokens_fed = 0;  // prefill + decode + verify positions
  uint64_t prefill_tokens = 0;
  uint64_t failed_forwards = 0;  // batched forwards that had to be split
  uint64_t paused_jobs = 0;      // running jobs left out of a step, KV kept
  uint64_t evicted_jobs = 0;     // jobs whose KV was released for memory
  int max_batch_seqs = 0;
  int num_blocks = 0;
  int free_blocks = 0;
  int cached_blocks = 0;
  int active_jobs = 0;  // submitted and not yet ended
  std::string accounting_error;
  std::string fatal_error;  // the device failed for good: every job fails with this
  int captured_steps = 0;   // decode-step graphs captured (one per bucket)
  uint64_t replayed_steps = 0;
  DraftCounts drafts[kNumDraftSources];  // all jobs, by DraftSource
  uint64_t draft_rounds = 0;             // draft-model forwards that made drafts
  uint64_t tree_verifies = 0;            // verifies of a draft tree (not a chain)
  uint64_t tree_kv_moves = 0;            // KV slots moved into place after a tree verify
  std::string draft_error;               // the draft model failed; speculation goes on without it
  bool draft_off = false;                // the draft model did not pay here and was stopped
};

// Thread-safety: submit, cancel, stats and shutdown may be called from any
// thread; callbacks run on the engine thread (never call shutdown from one).
class Engine : public EngineInterface {
 public:
  static constexpr size_t kDefaultCpuKvBytes = size_t{256} << 20;
  static constexpr size_t kGpuMemoryMargin = size_t{1} << 30;

  // Sizes the block pool from the budget, allocates the KV storage on the
  // model's backend and starts the engine thread. The model must outlive the
  // engine and must not be used by anyone else meanwhile.
  static Result<std::unique_ptr<Engine>> create(Model& model, EngineOptions options);
  ~Engine() override;  // shutdown()
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Returns at once. After shutdown the job ends at once, on the calling
  // thread, as kCancelled.
  JobId submit(CompletionJob job, JobCallbacks callbacks) override;
  void cancel(JobId id) override;

  // Ends every queued and running job as kCancelled (one on_done each), joins
  // the engine thread, clears the prefix cache and checks that every KV block
  // is back in the pool. Idempotent; returns the accounting check's result
  // (an error when called from a callback, which runs on the engine thread).
  Status shutdown();

  EngineStats stats() const;
  std::string fatal_error() const override;
  int num_kv_blocks() const { return pool_.num_blocks(); }

 private:
  struct Pending {
    JobId id = 0;
    CompletionJob job;
    JobCallbacks callbacks;
    Clock::time_point submitted;
  };
  struct Active {
    JobCallbacks callbacks;
    Sampler sampler;
    Clock::time_point deadline;
    bool speculate = false;
    std::string heal;  // required_prefix bytes not yet produced
    DraftSource draft_source = DraftSource::kLookup;  // of the draft set for the next verify
  };

  Engine(Model& model, EngineOptions options, int num_blocks, KvStorage kv, std::optional<KvStorage> draft_kv,
         int max_logit_rows);
  void run();
  void step();
  void finish(std::vector<EndedJob>& ended);
  void fail_all(const std::string& message);
  void enter_fatal(const std::string& why);
  void propose_drafts(const StepPlan& plan);
  // Moves the KV of each accepted tree path into the slots after its
  // sequence's last token (both models), before commit truncates the rest.
  void move_tree_paths(std::span<const StepSequence> seqs, std::span<const std::vector<int32_t>> sampled);
  // The draft model's rounds for the plan's model-drafted sequences: fills
  // their draft tokens in place (and keeps their draft distributions when
  // they sample). On a draft failure the placeholders stay (verify rejects
  // them) and the draft model is switched off.
  void draft_rounds(StepPlan& plan);
  // The draft model runs the step's batch so its KV covers what the target's does.
  void mirror(std::span<const StepSequence> seqs);
  void draft_failed(const std::string& why);
  // Prepares and runs `seqs`, then downloads what sampling needs: the
  // device argmax of every row into ids_[row_base...] and, for the
  // sequences sampled on the host (non-greedy, token healing), their logits
  // rows into host_logits_ at (row_base + row) * vocab. `seq_base`: the
  // sequences already staged before these (the capacity check).
  Status forward(std::span<const StepSequence> seqs, int row_base, int seq_base);
  bool samples_on_host(const StepSequence& seq) const;
  std::vector<int32_t> sample(const StepSequence& seq, size_t index, Active& job, const int32_t* ids,
                              const float* rows);
  int32_t sample_healing(Active& job, const float* row);
  std::optional<Clock::time_point> nearest_deadline() const;
  void publish_stats();

  Model& model_;
  Model* draft_;  // null: no draft model (or it failed)
  EngineOptions options_;
  Speculator spec_;
  // Engine-thread state (touched by other threads only after the join).
  BlockPool pool_;
  PrefixCache cache_;
  Scheduler scheduler_;
  KvStorage kv_;
  std::optional<KvStorage> draft_kv_;
  std::map<JobId, Active> active_;
  std::vector<float> heal_scratch_;  // masked logits row for token healing
  // Step staging, sized at create for the largest step (no allocation per step).
  std::vector<SequenceInput> inputs_;
  std::vector<KvBlockCopy> copies_;
  std::vector<KvBlockCopy> slot_copies_;  // accepted tree paths moved into place
  std::vector<int32_t> ids_;                 // argmax of each logits row
  // Logits rows sampled on the host, by row of the step; grows to the most
  // such rows a step had (none while every job is greedy).
  std::vector<float> host_logits_;
  // Draft distributions of the step's sampled model drafts, by plan index.
  std::vector<std::vector<float>> draft_probs_;
  std::vector<float> probs_scratch_, residual_scratch_;
  std::vector<SequenceInput> draft_inputs_;
  std::vector<int32_t> draft_ids_;
  bool blocked_ = false;  // the last step had jobs but could run none
  EngineStats local_stats_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Pending> inbox_;
  std::vector<JobId> cancels_;
  JobId next_id_ = 1;
  bool stopping_ = false;
  bool stopped_ = false;
  std::string fatal_;  // set once the backend reports a sticky failure
  Status shutdown_status_;
  EngineStats stats_;
  std::thread thread_;
};

}  // namespace ghostd::runtime
