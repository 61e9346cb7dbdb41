// The loaded model as the server sees it: load progress while it loads,
// then the tokenizer and FIM template. Shared by all sessions; the runtime
// reports into it from its loading thread.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "runtime/core/result.h"
#include "server/prompt.h"

namespace ghostd::server {

struct ModelInfo {
  std::string name;
  TokenizerView tokenizer;
  FimTemplate fim;
  std::string warning;  // shown to clients once ready (e.g. no FIM tokens: plain prompts)
  int context_length = 0;  // the model's positions (prompt + new tokens); 0 = unknown
};

struct ModelSnapshot {
  enum class Phase { kLoading, kReady, kFailed };
  Phase phase = Phase::kLoading;
  int percent = 0;
  std::string message;                    // progress text or the failure
  std::shared_ptr<const ModelInfo> info;  // set when ready
};

// Thread-safety: thread-safe. Listeners run on the reporting thread and
// must only post to their own executor.
class ModelState {
 public:
  using Listener = std::function<void(const ModelSnapshot&)>;

  // Hooks for the runtime's loader.
  void report_progress(int percent, std::string message);
  // Detects the FIM template; without FIM tokens it falls back to plain
  // left-to-right prompts and sets ModelInfo::warning.
  ghostd::runtime::Status set_ready(std::string name, TokenizerView tokenizer, int context_length = 0);
  void set_failed(std::string error);

  // Sessions ask for the model their client configured (empty: the
  // default). The first request picks what the loader loads; the result is
  // a warning for the client when a different model is already chosen.
  using LoadRequestHandler = std::function<void(const std::string& path)>;
  void set_load_request_handler(LoadRequestHandler handler);
  // `draft`: the client's draftModel (empty: the daemon's choice), read by
  // the handler through requested_draft().
  std::optional<std::string> request_model(const std::string& path, const std::string& draft = {});
  std::string requested_draft() const;

  ModelSnapshot snapshot() const;
  uint64_t subscribe(Listener listener);
  void unsubscribe(uint64_t id);

 private:
  void publish(const ModelSnapshot& s);

  mutable std::mutex mu_;
  ModelSnapshot state_;
  std::unordered_map<uint64_t, std::shared_ptr<Listener>> listeners_;
  uint64_t next_id_ = 1;
  LoadRequestHandler load_handler_;
  std::optional<std::string> requested_;  // the first request's path
  std::string requested_draft_;
};

}  // namespace ghostd::server
