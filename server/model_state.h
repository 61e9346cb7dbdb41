// The loaded model as the server sees it: load progress while it loads,
// then the tokenizer and FIM template. Shared by all sessions; the runtime
// reports into it from its loading thread.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "runtime/result.h"
#include "server/prompt.h"

namespace ghostd::server {

struct ModelInfo {
  std::string name;
  TokenizerView tokenizer;
  FimTemplate fim;
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
  // Detects the FIM template; on error the state becomes kFailed with that error.
  ghostd::runtime::Status set_ready(std::string name, TokenizerView tokenizer);
  void set_failed(std::string error);

  ModelSnapshot snapshot() const;
  uint64_t subscribe(Listener listener);
  void unsubscribe(uint64_t id);

 private:
  void publish(const ModelSnapshot& s);

  mutable std::mutex mu_;
  ModelSnapshot state_;
  std::unordered_map<uint64_t, std::shared_ptr<Listener>> listeners_;
  uint64_t next_id_ = 1;
};

}  // namespace ghostd::server
