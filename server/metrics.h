// --metrics-log: one JSON line per completion plus a periodic summary line,
// written by a background thread so the event loop never waits on the disk.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/core/result.h"
#include "runtime/engine/engine_api.h"

namespace ghostd::server {

struct CompletionRecord {
  std::string request_id;
  std::string tenant;    // from the session's token; empty without --token-file
  uint64_t session = 0;  // the daemon's session number
  std::string document;
  std::string method;   // inline or completion
  std::string trigger;  // invoked | automatic | character
  int prompt_tokens = 0;
  int reused_tokens = 0;
  double queue_ms = 0;
  double ttft_ms = 0;
  double total_ms = 0;
  int generated_tokens = 0;
  double tokens_per_s = 0;
  int draft_proposed = 0;
  int draft_accepted = 0;
  // By proposer (runtime::DraftSource): the line's "drafts" object, and the
  // summary's acceptance rate per proposer.
  ghostd::runtime::DraftCounts drafts[ghostd::runtime::kNumDraftSources];
  int batch_size = 0;
  int replica = -1;      // the replica that ran the job (--replicas); -1: none reported (null)
  double server_ms = 0;  // time spent in the server (prompt, post-processing), not the engine
  double latency_ms = 0;   // request arrival -> reply queued
  double overhead_ms = 0;  // latency_ms minus the engine's total_ms: everything the server adds
  std::string outcome;   // ok | cancelled | superseded | expired | error
};

std::string to_json_line(const CompletionRecord& r);

// Thread-safety: record() is thread-safe and never blocks on I/O.
class MetricsLog {
 public:
  static constexpr size_t kMaxQueued = 100000;  // beyond this, records are counted and dropped

  static ghostd::runtime::Result<std::unique_ptr<MetricsLog>> open(
      const std::string& path, std::chrono::milliseconds summary_interval = std::chrono::seconds(10));
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  void record(CompletionRecord r);

 private:
  MetricsLog(std::FILE* file, std::chrono::milliseconds interval);
  void run();
  // Queue times and batch sizes of one replica's requests in a summary window.
  struct ReplicaWindow {
    std::vector<double> queue_ms;
    long long batch_sum = 0;
    int batch_max = 0;
  };
  void write_summary(std::vector<double>& latencies, std::vector<ReplicaWindow>& replicas,
                     std::chrono::steady_clock::time_point since);
  // Draft counts of the summary window, by proposer (writer thread only).
  ghostd::runtime::DraftCounts window_drafts_[ghostd::runtime::kNumDraftSources];

  std::FILE* file_;
  std::chrono::milliseconds interval_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<CompletionRecord> queue_;
  uint64_t dropped_ = 0;
  bool stop_ = false;
  std::thread writer_;
};

}  // namespace ghostd::server
