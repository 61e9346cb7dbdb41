#include "server/metrics.h"

#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <unistd.h>

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
