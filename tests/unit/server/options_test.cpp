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

  auto d = parse({"--draft-model", "d.gguf", "--speculation", "suffix,model", "--max-draft", "5"});
  REQUIRE(d.ok());
  CHECK(d->draft_model == "d.gguf");
  CHECK(d->use_draft);
  CHECK_FALSE(d->spec_lookup);
  CHECK(d->spec_suffix);
  CHECK(d->spec_model);
  CHECK_FALSE(d->spec_typed);
  CHECK(d->max_draft == 5);
  CHECK(d->draft_trees);
  auto chains = parse({"--draft-trees", "off"});
  REQUIRE(chains.ok());
  CHECK_FALSE(chains->draft_trees);

  struct Bad {
    std::vector<const char*> args;
    const char* message;
  };
  const std::vector<Bad> bad = {
      {{"--frobnicate"}, "unknown flag --frobnicate (see --help)"},
      {{"--speculation", "lookup,magic"}, "--speculation: unknown proposer 'magic' (lookup, suffix, model, typed)"},
      {{"--max-draft", "99"}, "--max-draft: expected an integer in [0, 32], got '99'"},
      {{"--draft-trees", "maybe"}, "--draft-trees: expected on or off, got 'maybe'"},
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
  // A draft model path (taken at startup, like model); a wrong type is an error.
  CHECK(apply_initialization_options(o, nlohmann::json::parse(R"({"draftModel":"/m/draft"})")).ok());
  CHECK(o.draft_model == "/m/draft");
  auto d = apply_initialization_options(o, nlohmann::json::parse(R"({"draftModel":3})"));
  REQUIRE_FALSE(d.ok());
  CHECK(d.message() == "initializationOptions.draftModel: expected a string (a path, or none)");
}

TEST_CASE("remote-serving flags: models by name, TLS, tokens, limits") {
  auto o = parse({"--model", "base.gguf", "--model", "small=/m/small", "--model=big=/m/big.gguf", "--listen",
                  "0.0.0.0:9000", "--tls-cert", "c.pem", "--tls-key", "k.pem", "--token-file", "t", "--insecure",
                  "--handshake-timeout-ms", "500", "--idle-timeout-s", "60", "--max-open-documents", "5",
                  "--max-document-bytes", "4096", "--max-requests-in-flight", "3",
                  "--max-requests-per-second", "20", "--prompt-threads", "3", "--share-window-ms", "250"});
  REQUIRE(o.ok());
  CHECK(o->prompt_threads == 3);
  CHECK(o->share_window_ms == 250);
  CHECK(parse({"--model", "m"})->share_window_ms == 1000);
  CHECK_FALSE(parse({"--model", "m", "--share-window-ms", "-1"}).ok());
  CHECK(o->model == "base.gguf");
  REQUIRE(o->named_models.size() == 2);
  CHECK(*find_named_model(*o, "small") == "/m/small");
  CHECK(*find_named_model(*o, "big") == "/m/big.gguf");
  CHECK(find_named_model(*o, "base.gguf") == nullptr);
  CHECK(o->tls());
  CHECK(o->tls_key == "k.pem");
  CHECK(o->token_file == "t");
  CHECK(o->insecure);
  CHECK(o->handshake_timeout_ms == 500);
  CHECK(o->idle_timeout_s == 60);
  CHECK(o->max_documents == 5);
  CHECK(o->max_document_bytes == 4096);
  CHECK(o->max_requests_in_flight == 3);
  CHECK(o->max_requests_per_second == 20);
  // A path with '=' in a folder name stays a path.
  auto p = parse({"--model", "/models/a=b/m.gguf"});
  REQUIRE(p.ok());
  CHECK(p->model == "/models/a=b/m.gguf");
  CHECK(p->named_models.empty());

  struct Bad {
    std::vector<const char*> args;
    const char* message;
  };
  const std::vector<Bad> bad = {
      {{"--listen", "127.0.0.1:1", "--tls-cert", "c.pem"}, "--tls-cert and --tls-key go together"},
      {{"--token-file", "t"},
       "--tls-cert, --tls-key, --token-file, --insecure and --idle-timeout-s need --listen (a stdio session is the "
       "editor's own process)"},
      {{"--listen", "unix:/tmp/s", "--tls-cert", "c", "--tls-key", "k"},
       "--tls-cert: TLS is for TCP listeners; a Unix socket is guarded by its file permissions"},
      {{"--model", "a=x", "--model", "a=y"}, "--model: the name 'a' is given twice"},
      {{"--model", "x", "--model", "y"}, "--model: only one unnamed model (name the others: --model NAME=PATH)"},
      {{"--model", "a="}, "--model a=: missing the path after '='"},
      {{"--insecure=yes"}, "--insecure takes no value"},
      {{"--max-requests-in-flight", "0"}, "--max-requests-in-flight: expected an integer in [1, 1048576], got '0'"},
      {{"--prompt-threads", "65"}, "--prompt-threads: expected an integer in [0, 64], got '65'"},
  };
  for (const auto& b : bad) {
    auto r = parse(b.args);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message == b.message);
  }
}

TEST_CASE("--replicas") {
  CHECK(parse({})->replicas == 1);
  auto o = parse({"--replicas", "4"});
  REQUIRE(o.ok());
  CHECK(o->replicas == 4);
  CHECK(parse({"--replicas=2"})->replicas == 2);
  for (const char* bad : {"0", "-1", "65", "100000000000", "two", ""}) {
    CAPTURE(bad);
    auto r = parse({"--replicas", bad});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message == std::string("--replicas: expected an integer in [1, 64], got '") + bad + "'");
  }
  auto missing = parse({"--replicas"});
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message == "--replicas: missing value");
}
