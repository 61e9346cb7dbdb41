// The stand-in engine until runtime::Engine is merged: one job at a time on
// the model's backend, real decoding. It keeps the KV of the last job's
// tokens, so a keystroke whose prompt shares a prefix with the previous
// prompt prefills only the rest (one document's worth of reuse).
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "runtime/engine_api.h"
#include "runtime/model.h"

namespace ghostd::server {

// Thread-safety: submit and cancel from any thread; callbacks run on the
// engine thread; shutdown from any thread but a callback.
class SimpleEngine : public ghostd::runtime::EngineInterface {
 public:
  // `max_context`: prompt plus new tokens of one job (longer jobs fail).
  // The model must outlive the engine and belong to it meanwhile.
  SimpleEngine(ghostd::runtime::Model& model, int max_context);
  ~SimpleEngine() override;
  SimpleEngine(const SimpleEngine&) = delete;
  SimpleEngine& operator=(const SimpleEngine&) = delete;

  ghostd::runtime::JobId submit(ghostd::runtime::CompletionJob job, ghostd::runtime::JobCallbacks callbacks) override;
  void cancel(ghostd::runtime::JobId id) override;
  // Ends queued jobs as kCancelled and joins the engine thread. Idempotent.
  void shutdown();

 private:
  struct Job {
    ghostd::runtime::JobId id = 0;
    ghostd::runtime::CompletionJob job;
    ghostd::runtime::JobCallbacks callbacks;
    ghostd::runtime::Clock::time_point submitted;
  };

  void run();
  ghostd::runtime::JobResult execute(Job& job);
  bool cancelled(ghostd::runtime::JobId id);

  ghostd::runtime::Model& model_;
  int max_context_;
  // Engine-thread state.
  std::optional<ghostd::runtime::KvStorage> kv_;
  std::vector<int32_t> block_table_;
  std::vector<int32_t> cached_;  // tokens whose KV is in kv_, from position 0
  std::vector<float> logits_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  std::set<ghostd::runtime::JobId> cancels_;
  ghostd::runtime::JobId next_id_ = 1;
  ghostd::runtime::JobId running_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace ghostd::server
