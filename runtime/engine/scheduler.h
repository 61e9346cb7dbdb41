// Device-free scheduler for the engine (DESIGN.md invariant 3): which jobs run
// in the next step, with which tokens and which KV blocks.
//
// Job states: waiting (no KV: new, or evicted), running (in the last step),
// paused (holds KV, left out of the last step). A job's `tokens` are its prompt
// plus everything generated; its KV covers tokens[0, computed). Between steps
// computed <= tokens.size() - 1: the last token is always still to be fed.
//
// How schedule(now) builds a step:
//  1. Cancelled, stopped and expired jobs (and jobs that can never fit) leave:
//     their computed full blocks go to the prefix cache, their blocks back to
//     the pool, and their terminal result is in plan.ended.
//  2. The rest are ordered by (priority class, fair round, running < paused <
//     waiting, deadline, arrival). Within a class the jobs of each session
//     are ranked (running first, then deadline, arrival); sessions of a
//     tenant take turns, then tenants take turns: a job's round is its place
//     in that interleaving. So a flooding session gets its share, not more,
//     and a quiet session's keystroke is in the first round, never behind
//     another session's backlog. Within a session running jobs keep their
//     slot (no thrashing); across classes the higher class always goes first.
//     While several sessions have work, each tenant gets at most an equal
//     share of the step (max_batch_tokens and max_batch_seqs over the
//     tenants with jobs) and each of its sessions an equal part of that
//     (rounded up; at least a block of tokens and one sequence). Capacity a
//     session cannot use is not handed to another beyond its share: a
//     flooding session gets its share, not more, so the steps the others
//     wait for stay small. For a session with a backlog (several jobs),
//     sessions that had jobs within share_window_ms count as having work
//     too (an editor between two keystrokes), so a flood's steps stay small
//     while others type; a session with one job is held to its share among
//     the sessions with jobs only.
//  3. Walking that order under max_batch_tokens and max_batch_seqs, each job
//     asks for its tokens: a decode position (1 token, or 1 + k draft tokens to
//     verify, all logits) when only its last token is pending, else a prefill
//     chunk of what the budget leaves. A waiting job first adopts the longest
//     cached prefix (at most tokens.size() - 1 tokens, so one is always fed).
//  4. Memory: when the pool lacks blocks, first unreferenced prefix-cache
//     blocks are evicted, then jobs later in the order (lowest first) are
//     evicted: their full blocks are cached, the rest released, and they go
//     back to waiting to be recomputed (largely from the cache) later. Nothing
//     is evicted unless that makes the job fit; a prefill chunk shrinks to
//     what fits. A job that still cannot run waits; after that no new job is
//     admitted in the step (no priority inversion on memory).
//  5. Running jobs left out of the batch are paused with their KV kept.
// The first job in the order can always run: submit() rejects (as failed) any
// job whose prompt + max_new_tokens exceeds the whole pool.
//
// commit(plan, sampled) after the forward: appends the sampled tokens (for a
// verify, the accepted draft prefix, or a tree's accepted path, plus one
// token; rejected draft KV is truncated away; the engine has moved an
// accepted tree path's KV into the slots after the last token), finishes jobs on a stop token (not emitted) or
// max_new_tokens, and caches a job's prompt blocks once its prefill completes.
#pragma once

#include <map>
#include <set>
#include <optional>
#include <string_view>
#include <span>
#include <string>
#include <vector>

#include "runtime/engine/engine_api.h"
#include "runtime/engine/kv_cache.h"
#include "runtime/engine/prefix_cache.h"
#include "runtime/speculative/draft_tree.h"

namespace ghostd::runtime {

struct SchedulerConfig {
  int max_batch_tokens = 512;  // tokens fed per step (prefill + decode + verify)
  int max_batch_seqs = 64;
  int max_draft_tokens = 8;  // verify at most this many draft tokens per job
  // A session that had a job this recently still counts, while it has none,
  // for the share of a session with a backlog (step 2): a typist's
  // keystrokes come one at a time, and if the gaps between them handed a
  // flooding session the whole step, each keystroke would wait for that step
  // (a 16-editor load test measured p50 2.7 -> 26 ms under a flood that
  // way). 0: only sessions with jobs count.
  int share_window_ms = 1000;
};

enum class SeqState { kWaiting, kRunning, kPaused };

// One sequence of a step: maps onto the model's SequenceInput.
struct StepSequence {
  JobId id = 0;
  std::vector<int32_t> tokens;       // fed this step; with drafts: [last, d1..dk]
  int32_t start_pos = 0;             // position of tokens[0]
  std::vector<BlockId> block_table;  // covers [0, start_pos + tokens.size())
  bool all_logits = false;           // verify: a logits row per token
  int32_t num_draft = 0;             // k when verifying
  // A draft tree (empty: the drafts are a chain): the fed token each fed
  // token follows, -1 for tokens[0] (SequenceInput::tree_parents).
  std::vector<int32_t> tree_parents;
  bool samples = false;              // a token is sampled (decode, verify, last prefill chunk)
};

struct EndedJob {
  JobId id = 0;
  JobResult result;
};

struct StepPlan {
  std::vector<StepSequence> seqs;
  std::vector<BlockCopy> copies;  // run on the device before the forward, in order
  std::vector<EndedJob> ended;    // left in this step; send their terminal status
  std::vector<JobId> paused;      // running -> paused this step (KV kept)
  std::vector<JobId> evicted;     // KV released; will be recomputed
  int num_tokens = 0;
  int num_prefill_tokens = 0;
  bool empty() const { return seqs.empty(); }
};

struct CommitResult {
  struct Update {
    JobId id = 0;
    std::vector<int32_t> new_tokens;  // to stream; stop tokens are not included
  };
  std::vector<Update> updates;
  std::vector<EndedJob> ended;  // finished in this step (stop token, max tokens)
};

// Thread-safety: not thread-safe; owned by the engine thread.
class Scheduler {
 public:
  // `cache` may be null (no prefix reuse). Pool and cache must outlive this.
  Scheduler(SchedulerConfig config, BlockPool& pool, PrefixCache* cache);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a job. A job that can never run leaves in the next plan as failed.
  void submit(JobId id, const CompletionJob& job, Clock::time_point now);
  // The job leaves in the next schedule() as cancelled / finished (e.g. the
  // token callback asked to stop). Unknown ids are ignored.
  void cancel(JobId id);
  void stop(JobId id);
  // Draft tokens to verify in the job's next decode step (replaces older
  // ones): a chain, or a tree (DraftTree::check() must be empty). A step
  // verifies the tree's first k nodes (a subtree: parents come first).
  void set_draft(JobId id, std::vector<int32_t> draft);
  void set_draft_tree(JobId id, DraftTree draft);

  StepPlan schedule(Clock::time_point now);
  // `sampled[i]` belongs to plan.seqs[i]: empty when !samples; one token for a
  // decode or last prefill chunk; accepted draft prefix + one token for a verify.
  CommitResult commit(const StepPlan& plan, std::span<const std::vector<int32_t>> sampled,
                      Clock::time_point now);
  // The forward failed: every job of the step ends as failed with `message`.
  std::vector<EndedJob> fail_step(const StepPlan& plan, const std::string& message,
                                  Clock::time_point now);
  // Ends every job (shutdown) with `status`.
  std::vector<EndedJob> drain(JobStatus status, Clock::time_point now);

  size_t num_jobs() const { return jobs_.size(); }
  int num_in_state(SeqState state) const;
  std::optional<SeqState> state(JobId id) const;
  // Prompt + generated tokens (e.g. for prompt-lookup drafts); null if unknown.
  const std::vector<int32_t>* tokens(JobId id) const;
  int prompt_len(JobId id) const;

  // Checks pool/cache/job accounting; call between steps (after commit).
  Status validate() const;

 private:
  struct Job {
    JobId id = 0;
    Priority priority = Priority::kInteractive;
    Clock::time_point deadline;
    Clock::time_point submitted;
    std::string document_id;
    std::string tenant;
    uint64_t session_id = 0;
    std::string cache_salt;
    std::vector<int32_t> tokens;
    int prompt_len = 0;
    int max_new_tokens = 0;
    std::vector<int32_t> stop_ids;
    SequenceBlocks blocks;  // num_tokens() == computed
    DraftTree draft;
    SeqState state = SeqState::kWaiting;
    uint64_t arrival = 0;
    uint64_t round = 0;  // step 2's fair round, recomputed every schedule()
    bool admitted_once = false;
    bool has_first_token = false;
    std::optional<JobStatus> pending_end;
    std::string error;
    JobMetrics metrics;
    int generated() const { return static_cast<int>(tokens.size()) - prompt_len; }
  };

  EndedJob end_job(Job& job, JobStatus status, Clock::time_point now);
  void evict_job(Job& job);
  void cache_blocks(const Job& job);
  int reclaimable_blocks(const std::vector<Job*>& order, size_t after) const;
  void make_room(int need, const std::vector<Job*>& order, size_t after, StepPlan& plan);
  struct Share {
    int tokens = 0;
    int seqs = 0;
  };
  // Caps per step while more than one session counts (else !limited).
  struct Caps {
    bool limited = false;
    std::map<std::string_view, Share> tenant;             // per tenant
    std::map<std::string_view, Share> session_of_tenant;  // per session of that tenant
  };
  // A session with one job is held to its share among the sessions with
  // jobs (now); one with a backlog (several jobs) to its share among those
  // and the sessions of the share window (backlog).
  struct Shares {
    Caps now, backlog;
    std::set<std::pair<std::string_view, uint64_t>> backlogged;
  };
  // Step 2: sorts `order`; returns the shares of step 3.
  Shares fair_order(std::vector<Job*>& order) const;
  // Drops from active_ the sessions whose last job ended before the window.
  void forget_inactive(Clock::time_point now);

  SchedulerConfig config_;
  BlockPool& pool_;
  PrefixCache* cache_;
  std::map<JobId, Job> jobs_;
  uint64_t next_arrival_ = 0;
  // (tenant, session) -> when its last job ended (within share_window_ms;
  // a session with jobs counts anyway).
  std::map<std::pair<std::string, uint64_t>, Clock::time_point> active_;
};

}  // namespace ghostd::runtime
