// The completion core: plain structs in (text windows around the cursor,
// other open documents), a prompt to the engine, post-processed text out.
// It knows nothing of JSON or LSP.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/steady_timer.hpp>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/engine/engine_api.h"
#include "server/mailbox.h"
#include "server/model_state.h"
#include "server/postprocess.h"
#include "server/prompt.h"
#include "server/prompt_pool.h"

namespace ghostd::server {

struct CompletionInput {
  std::string document_id;  // keys KV reuse in the engine
  std::string prefix;       // window of text before the cursor
  std::string suffix;       // window of text after the cursor
  std::string line_prefix;  // the cursor's line up to the cursor
  std::string path;
  std::vector<ContextFile> context;
  ghostd::runtime::Priority priority = ghostd::runtime::Priority::kInteractive;
  std::string tenant;      // fair scheduling and the prefix-cache salt
  uint64_t session_id = 0;
};

struct CompletionSettings {
  PromptBudget budget;
  int max_tokens = 64;
  std::chrono::milliseconds deadline{1500};
  PostprocessOptions post;
  bool use_draft = true;
  ghostd::runtime::SamplingParams sampling;
};

enum class CompletionOutcome { kOk, kCancelled, kSuperseded, kExpired, kError };
const char* completion_outcome_name(CompletionOutcome o);

struct CompletionOutput {
  CompletionOutcome outcome = CompletionOutcome::kOk;
  std::string text;   // post-processed; empty means no item
  std::string error;  // kError
  ghostd::runtime::JobMetrics metrics;
  int prompt_tokens = 0;
  double server_ms = 0;  // prompt building + post-processing
};

// Thread-safety: not thread-safe; all calls on `executor`. Engine callbacks
// are posted back to it.
class CompletionCore {
 public:
  using Ticket = uint64_t;
  using Done = std::function<void(CompletionOutput)>;
  // How long past the job's deadline the core waits for the engine before it
  // answers with what has streamed in.
  static constexpr std::chrono::milliseconds kDeadlineGrace{100};

  // With a pool, prompts are built on its threads (queued under
  // `input.session_id`) and jobs submitted when they are ready; without one,
  // inside start(). The pool must outlive the core.
  CompletionCore(asio::any_io_executor executor, ghostd::runtime::EngineInterface& engine,
                 PromptPool* prompts = nullptr);
  ~CompletionCore();
  CompletionCore(const CompletionCore&) = delete;
  CompletionCore& operator=(const CompletionCore&) = delete;

  // Builds the prompt and submits the job (or has the pool build it); `done`
  // runs exactly once, on the executor.
  Ticket start(CompletionInput input, std::shared_ptr<const ModelInfo> model, const CompletionSettings& settings,
               Done done);
  // Ends a completion now with `why` and an empty text, and cancels its job.
  void cancel(Ticket ticket, CompletionOutcome why);
  size_t in_flight() const { return pending_.size(); }

 private:
  struct Pending;
  struct Prepared;
  // Typed-through: the last completion of each document (its text before
  // post-processing) and the bytes before the cursor then. When the next
  // request's prefix shows the user typed the start of it, the rest becomes
  // the job's draft_hint: drafts the engine verifies, almost always accepted.
  struct Shown {
    std::string tail;
    std::string text;
  };
  static constexpr size_t kShownTail = 256;
  static constexpr size_t kMaxTypedThrough = 1024;
  static constexpr size_t kMaxHintTokens = 256;
  static constexpr size_t kMaxShownDocuments = 1024;
  // The draft hint when `prefix` typed through the start of `shown`.
  static std::vector<int32_t> typed_through(const Shown& shown, const std::string& prefix, const std::string& heal,
                                            const ModelInfo& model);
  // The prompt, its job and the hint: on the event loop or a pool thread.
  static Prepared prepare(CompletionInput input, const ModelInfo& model, const CompletionSettings& settings,
                          const Shown* shown);
  void submit_prepared(Ticket t, Prepared prepared);
  void remember_shown(const std::string& document_id, std::string tail, const std::string& text);
  void on_tokens(Ticket t, std::vector<int32_t> tokens);
  void on_done(Ticket t, ghostd::runtime::JobResult result);
  void on_deadline(Ticket t);
  void finish(Ticket t, CompletionOutcome outcome, const std::vector<int32_t>& tokens,
              ghostd::runtime::JobMetrics metrics, std::string error);

  asio::any_io_executor executor_;
  ghostd::runtime::EngineInterface& engine_;
  PromptPool* prompts_;  // may be null
  std::unordered_map<Ticket, std::unique_ptr<Pending>> pending_;
  std::shared_ptr<Mailbox> mailbox_;     // engine callbacks post through it; closed on destruction
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // posted work checks it before touching *this
  Ticket next_ticket_ = 1;
  std::unordered_map<std::string, Shown> shown_;
};

}  // namespace ghostd::server
