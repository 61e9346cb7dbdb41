#include "server/metrics.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

namespace ghostd::server {

using ghostd::runtime::Error;
using ghostd::runtime::Result;

namespace {

namespace rt = ghostd::runtime;

// {"lookup": {"proposed": P, "accepted": A, "mean_accepted": A / verifies}, ...}
// for the proposers that proposed anything; with `rates`, the acceptance rate too.
nlohmann::json drafts_json(const rt::DraftCounts (&d)[rt::kNumDraftSources], bool rates) {
  nlohmann::json j = nlohmann::json::object();
  for (int s = 0; s < rt::kNumDraftSources; ++s) {
    const rt::DraftCounts& c = d[s];
    if (c.proposed == 0) continue;
    nlohmann::json e = {{"proposed", c.proposed},
                        {"accepted", c.accepted},
                        {"mean_accepted", c.verifies > 0 ? static_cast<double>(c.accepted) / c.verifies : 0.0}};
    if (rates) e["acceptance"] = static_cast<double>(c.accepted) / c.proposed;
    j[rt::draft_source_name(static_cast<rt::DraftSource>(s))] = std::move(e);
  }
  return j;
}

}  // namespace

std::string to_json_line(const CompletionRecord& r) {
  nlohmann::json j = {
      {"type", "completion"},
      {"request_id", r.request_id},
      {"tenant", r.tenant},
      {"session", r.session},
      {"document", r.document},
      {"method", r.method},
      {"trigger", r.trigger},
      {"prompt_tokens", r.prompt_tokens},
      {"reused_tokens", r.reused_tokens},
      {"queue_ms", r.queue_ms},
      {"ttft_ms", r.ttft_ms},
      {"total_ms", r.total_ms},
      {"generated_tokens", r.generated_tokens},
      {"tokens_per_s", r.tokens_per_s},
      {"draft_proposed", r.draft_proposed},
      {"draft_accepted", r.draft_accepted},
      {"drafts", drafts_json(r.drafts, /*rates=*/false)},
      {"batch_size", r.batch_size},
      {"replica", r.replica >= 0 ? nlohmann::json(r.replica) : nlohmann::json(nullptr)},
      {"server_ms", r.server_ms},
      {"latency_ms", r.latency_ms},
      {"overhead_ms", r.overhead_ms},
      {"outcome", r.outcome},
  };
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Result<std::unique_ptr<MetricsLog>> MetricsLog::open(const std::string& path, std::chrono::milliseconds interval) {
  std::FILE* f = std::fopen(path.c_str(), "a");
  if (!f) return Error{"--metrics-log " + path + ": cannot open for appending: " + std::strerror(errno)};
  return std::unique_ptr<MetricsLog>(new MetricsLog(f, interval));
}

MetricsLog::MetricsLog(std::FILE* file, std::chrono::milliseconds interval)
    : file_(file), interval_(interval), writer_([this] { run(); }) {}

MetricsLog::~MetricsLog() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  writer_.join();
  std::fclose(file_);
}

void MetricsLog::record(CompletionRecord r) {
  {
    std::lock_guard lock(mu_);
    if (queue_.size() >= kMaxQueued) {
      ++dropped_;
      return;
    }
    queue_.push_back(std::move(r));
  }
  cv_.notify_one();
}

namespace {
double percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0.0;
  size_t k = std::min(v.size() - 1, static_cast<size_t>(std::ceil(q * v.size())) - 1);
  std::nth_element(v.begin(), v.begin() + static_cast<ptrdiff_t>(k), v.end());
  return v[k];
}
}  // namespace

void MetricsLog::write_summary(std::vector<double>& latencies, std::vector<ReplicaWindow>& replicas,
                               std::chrono::steady_clock::time_point since) {
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
  auto pct = [&](double q) { return percentile(latencies, q); };
  uint64_t dropped;
  {
    std::lock_guard lock(mu_);
    dropped = dropped_;
  }
  nlohmann::json j = {
      {"type", "summary"},
      {"interval_s", secs},
      {"requests", latencies.size()},
      {"requests_per_s", secs > 0 ? static_cast<double>(latencies.size()) / secs : 0.0},
      {"latency_p50_ms", pct(0.50)},
      {"latency_p99_ms", pct(0.99)},
      {"dropped_records", dropped},
      {"drafts", drafts_json(window_drafts_, /*rates=*/true)},
  };
  for (auto& c : window_drafts_) c = {};
  // Per replica (the requests an engine ran): where queueing and batching differ between replicas.
  nlohmann::json per_replica = nlohmann::json::array();
  for (size_t i = 0; i < replicas.size(); ++i) {
    ReplicaWindow& w = replicas[i];
    const size_t n = w.queue_ms.size();
    per_replica.push_back({{"replica", i},
                           {"requests", n},
                           {"queue_p50_ms", percentile(w.queue_ms, 0.50)},
                           {"queue_p99_ms", percentile(w.queue_ms, 0.99)},
                           {"batch_mean", n > 0 ? static_cast<double>(w.batch_sum) / static_cast<double>(n) : 0.0},
                           {"batch_max", w.batch_max}});
    w = {};
  }
  j["replicas"] = std::move(per_replica);
  std::fprintf(file_, "%s\n", j.dump().c_str());
  latencies.clear();
}

void MetricsLog::run() {
  std::vector<double> latencies;
  std::vector<ReplicaWindow> replicas;  // grows to the highest replica index seen
  auto window_start = std::chrono::steady_clock::now();
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait_until(lock, window_start + interval_, [this] { return stop_ || !queue_.empty(); });
    std::deque<CompletionRecord> batch;
    batch.swap(queue_);
    bool stopping = stop_;
    lock.unlock();
    for (const auto& r : batch) {
      std::fprintf(file_, "%s\n", to_json_line(r).c_str());
      latencies.push_back(r.total_ms);
      if (r.replica >= 0 && r.replica < 4096) {
        if (replicas.size() <= static_cast<size_t>(r.replica)) replicas.resize(static_cast<size_t>(r.replica) + 1);
        ReplicaWindow& w = replicas[static_cast<size_t>(r.replica)];
        w.queue_ms.push_back(r.queue_ms);
        w.batch_sum += r.batch_size;
        w.batch_max = std::max(w.batch_max, r.batch_size);
      }
      for (int d = 0; d < rt::kNumDraftSources; ++d) {
        window_drafts_[d].proposed += r.drafts[d].proposed;
        window_drafts_[d].accepted += r.drafts[d].accepted;
        window_drafts_[d].verifies += r.drafts[d].verifies;
      }
    }
    if (std::chrono::steady_clock::now() >= window_start + interval_ || (stopping && !latencies.empty())) {
      write_summary(latencies, replicas, window_start);
      window_start = std::chrono::steady_clock::now();
    }
    std::fflush(file_);
    lock.lock();
    if (stopping && queue_.empty()) return;
  }
}

}  // namespace ghostd::server
