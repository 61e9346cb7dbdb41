#include "server/metrics.h"

#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <unistd.h>
#include <vector>

using namespace ghostd::server;

TEST_CASE("metrics log writes one line per completion and a summary") {
  std::string path = std::string(GHOSTD_BINARY_DIR) + "/metrics_test_" + std::to_string(::getpid()) + ".jsonl";
  std::remove(path.c_str());
  {
    auto log = MetricsLog::open(path, std::chrono::milliseconds(50));
    REQUIRE(log.ok());
    for (int i = 0; i < 100; ++i) {
      CompletionRecord r;
      r.request_id = std::to_string(i);
      r.document = "file:///a";
      r.total_ms = i;
      r.outcome = i % 2 ? "ok" : "superseded";
      (*log)->record(r);
    }
  }
  std::ifstream in(path);
  std::string line;
  int completions = 0, summaries = 0;
  nlohmann::json last_summary;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j["type"] == "completion") ++completions;
    if (j["type"] == "summary") {
      ++summaries;
      last_summary = j;
    }
  }
  CHECK(completions == 100);
  CHECK(summaries >= 1);
  CHECK(last_summary.contains("latency_p99_ms"));
  std::remove(path.c_str());
  auto bad = MetricsLog::open("/nonexistent-dir/x.jsonl");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.find("/nonexistent-dir/x.jsonl") != std::string::npos);
}

TEST_CASE("metrics log: each line names its replica, the summary gives per-replica queue and batch figures") {
  std::string path = std::string(GHOSTD_BINARY_DIR) + "/metrics_replicas_test_" + std::to_string(::getpid()) + ".jsonl";
  std::remove(path.c_str());
  {
    // One summary at the end (the interval is long): it covers every record below.
    auto log = MetricsLog::open(path, std::chrono::seconds(3600));
    REQUIRE(log.ok());
    for (int i = 0; i < 30; ++i) {
      CompletionRecord r;
      r.request_id = std::to_string(i);
      r.replica = i < 10 ? 0 : (i < 29 ? 2 : -1);  // replica 1 ran nothing; one request reached no engine
      r.queue_ms = r.replica == 0 ? 1.0 : 40.0;
      r.batch_size = r.replica == 0 ? 1 : 4 + i % 2;
      r.outcome = "ok";
      (*log)->record(r);
    }
  }
  std::ifstream in(path);
  std::string line;
  std::vector<nlohmann::json> replicas_of_lines;
  nlohmann::json summary;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j["type"] == "completion") replicas_of_lines.push_back(j["replica"]);
    if (j["type"] == "summary") summary = j;
  }
  REQUIRE(replicas_of_lines.size() == 30);
  CHECK(replicas_of_lines[0] == 0);
  CHECK(replicas_of_lines[10] == 2);
  CHECK(replicas_of_lines[29].is_null());
  REQUIRE(summary.contains("replicas"));
  const auto& per = summary["replicas"];
  REQUIRE(per.size() == 3);
  CHECK(per[0]["requests"] == 10);
  CHECK(per[0]["queue_p50_ms"] == 1.0);
  CHECK(per[0]["batch_max"] == 1);
  CHECK(per[1]["requests"] == 0);
  CHECK(per[2]["requests"] == 19);
  CHECK(per[2]["queue_p99_ms"] == 40.0);
  CHECK(per[2]["batch_max"] == 5);
  CHECK(per[2]["batch_mean"].get<double>() > 4.0);
  CHECK(per[2]["batch_mean"].get<double>() < 5.0);
  std::remove(path.c_str());
}
