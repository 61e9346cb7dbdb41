// The boundary between server/ and runtime/: plain structs only (DESIGN.md
// invariant 1). No JSON, LSP or Asio type appears here.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace ghostd::runtime {

using Clock = std::chrono::steady_clock;

enum class Priority : int { kInteractive = 0, kPrefetch = 1, kBackground = 2 };

struct SamplingParams {
  float temperature = 0.0f;  // 0 = greedy
  int top_k = 0;             // 0 = off
  float top_p = 1.0f;        // 1 = off
  uint64_t seed = 0;
};

struct StopCriteria {
  int max_new_tokens = 64;
  std::vector<int32_t> stop_token_ids;  // the model's eos/eot tokens and FIM stops
};

// One decode job. `document_id` keys KV reuse across requests on a document.
struct CompletionJob {
  std::vector<int32_t> prompt;
  std::string document_id;
  Priority priority = Priority::kInteractive;
  Clock::time_point deadline = Clock::time_point::max();
  SamplingParams sampling;
  StopCriteria stop;
  bool use_draft = true;  // speculative decoding (any proposer)
  // Typed-through: the tokens this job is expected to produce, e.g. the rest
  // of the completion on screen after the user typed its first characters.
  // Proposed as drafts while the output follows them (verify keeps exactness).
  std::vector<int32_t> draft_hint;
  // Token healing: bytes the generated text must start with. The server backs
  // the prompt off by its last token(s) at the cursor and asks for their bytes
  // here, so the model may pick a token that crosses the cursor (e.g. " return"
  // after typed indentation) instead of continuing from an unnatural boundary.
  // Needs EngineOptions::token_bytes; the bytes are part of the output tokens.
  std::string required_prefix;
  // Who asked. The scheduler shares step capacity fairly between tenants,
  // then between the sessions of a tenant (scheduler.h, step 2).
  std::string tenant;
  uint64_t session_id = 0;
  // Prefix-cache isolation (vLLM's cache_salt): KV cached by a job is reused
  // only by jobs with the same salt. The server passes the tenant; empty is
  // the one shared salt of a daemon without tenants.
  std::string cache_salt;
};

enum class JobStatus { kFinished, kCancelled, kExpired, kFailed };

inline const char* job_status_name(JobStatus s) {
  switch (s) {
    case JobStatus::kFinished: return "finished";
    case JobStatus::kCancelled: return "cancelled";
    case JobStatus::kExpired: return "expired";
    case JobStatus::kFailed: return "failed";
  }
  return "unknown";
}

// Where a job's draft tokens came from (runtime/speculative/).
enum class DraftSource : int { kLookup = 0, kSuffix = 1, kModel = 2, kTyped = 3 };
inline constexpr int kNumDraftSources = 4;

inline const char* draft_source_name(DraftSource s) {
  switch (s) {
    case DraftSource::kLookup: return "lookup";
    case DraftSource::kSuffix: return "suffix";
    case DraftSource::kModel: return "model";
    case DraftSource::kTyped: return "typed";
  }
  return "unknown";
}

struct DraftCounts {
  int proposed = 0;  // draft tokens verified
  int accepted = 0;
  int verifies = 0;  // verify steps (mean accepted length = accepted / verifies)
};

struct JobMetrics {
  int prompt_tokens = 0;
  int reused_tokens = 0;  // prompt tokens served from the prefix cache
  int generated_tokens = 0;
  int draft_proposed = 0;
  int draft_accepted = 0;
  DraftCounts drafts[kNumDraftSources];  // by DraftSource
  int max_batch_size = 0;  // largest batch this job ran in
  double queue_ms = 0;     // submit -> first scheduled
  double ttft_ms = 0;      // submit -> first token
  double total_ms = 0;     // submit -> terminal
  int replica = -1;        // which replica ran it (ReplicaSet); -1: not reported
};

struct JobResult {
  JobStatus status = JobStatus::kFinished;
  std::string error;  // set when status == kFailed
  std::vector<int32_t> tokens;
  JobMetrics metrics;
};

// Callbacks run on the engine thread; they must be cheap and must not block
// (post to your own executor). `on_tokens` may return false to stop the job
// early (it then finishes with status kFinished).
struct JobCallbacks {
  std::function<bool(const std::vector<int32_t>& new_tokens)> on_tokens;
  std::function<void(JobResult)> on_done;  // called exactly once
};

}  // namespace ghostd::runtime

namespace ghostd::runtime {

using JobId = uint64_t;

// What the server needs from an engine. Implementations are thread-safe:
// submit and cancel may be called from any thread.
class EngineInterface {
 public:
  virtual ~EngineInterface() = default;
  // Queues a job; callbacks run on the engine thread. Never blocks on decoding.
  virtual JobId submit(CompletionJob job, JobCallbacks callbacks) = 0;
  // Cancels a queued or running job; its on_done reports kCancelled (unless it
  // already ended). Unknown or finished ids are ignored.
  virtual void cancel(JobId id) = 0;
  // Empty while jobs can run; else why none ever will again (the device
  // failed for good: a sticky CUDA error, a broken collective). Every job
  // submitted after that fails with this message.
  virtual std::string fatal_error() const { return {}; }
};

}  // namespace ghostd::runtime
