#include "server/options.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace ghostd::server;

namespace {
ghostd::runtime::Result<ServerOptions> parse(std::vector<const char*> args) {
  args.insert(args.begin(), "ghostd");
  return parse_server_options(static_cast<int>(args.size()), args.data());
}
}  // namespace

TEST_CASE("CLI flags") {
  auto o = parse({"--model", "m.gguf", "--max-tokens", "32", "--deadline-ms=250",
                  "--metrics-log", "/tmp/x.jsonl", "--listen", "127.0.0.1:7777", "--no-draft"});
  REQUIRE(o.ok());
  CHECK(o->model == "m.gguf");
  CHECK(o->max_tokens == 32);
  CHECK(o->deadline_ms == 250);
  CHECK(o->metrics_log == "/tmp/x.jsonl");
  CHECK(o->listen == "127.0.0.1:7777");
  CHECK_FALSE(o->use_draft);

  struct Bad {
    std::vector<const char*> args;
    const char* message;
  };
  const std::vector<Bad> bad = {
      {{"--frobnicate"}, "unknown flag --frobnicate (see --help)"},
      {{"--draft-model", "d.gguf"},
       "--draft-model: speculative decoding with a draft model is not supported yet; ghostd speculates with "
       "prompt-lookup drafts (on by default, --no-draft turns them off). Remove --draft-model."},
      {{"--max-tokens"}, "--max-tokens: missing value"},
      {{"--max-tokens", "lots"}, "--max-tokens: expected an integer in [1, 4096], got 'lots'"},
      {{"--context-budget", "3"}, "--context-budget: expected an integer in [16, 1048576], got '3'"},
  };
  for (const auto& b : bad) {
    auto r = parse(b.args);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message == b.message);
  }
}

TEST_CASE("initializationOptions") {
  ServerOptions o;
  CHECK(apply_initialization_options(o, nlohmann::json::parse(
      R"({"maxTokens":12,"contextBudget":1024,"deadlineMs":300,"useDraft":false,"model":"x","unknown":1})")).ok());
  CHECK(o.max_tokens == 12);
  CHECK(o.context_budget == 1024);
  CHECK(o.deadline_ms == 300);
  CHECK_FALSE(o.use_draft);
  CHECK(o.model == "x");
  ServerOptions before = o;
  auto s = apply_initialization_options(o, nlohmann::json::parse(R"({"maxTokens":1,"deadlineMs":"soon"})"));
  REQUIRE_FALSE(s.ok());
  CHECK(s.message() == "initializationOptions.deadlineMs: expected an integer in [1, 600000]");
  CHECK(o.max_tokens == before.max_tokens);  // unchanged on error
  CHECK_FALSE(apply_initialization_options(o, nlohmann::json::array()).ok());
  CHECK(apply_initialization_options(o, nullptr).ok());
  // A draft model is refused, not silently ignored, until draft models run; empty is "none".
  auto d = apply_initialization_options(o, nlohmann::json::parse(R"({"draftModel":"/m/draft"})"));
  REQUIRE_FALSE(d.ok());
  CHECK(d.message().find("initializationOptions.draftModel: speculative decoding with a draft model is not supported yet") == 0);
  CHECK(apply_initialization_options(o, nlohmann::json::parse(R"({"draftModel":""})")).ok());
}
