#include "server/lsp_server.h"

#include <doctest/doctest.h>

#include "lsp_harness.h"
#include "server/metrics.h"

#include <fstream>
#include <map>
#include <thread>
#include <unistd.h>

using namespace ghostd::server;
using ghostd::server::testing::LspHarness;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

int code_of(const std::optional<json>& r) {
  REQUIRE(r.has_value());
  REQUIRE(r->contains("error"));
  return (*r)["error"]["code"].get<int>();
}

const char* kUri = "file:///w/main.cpp";
const char* kText = "int f() {\n  \n}\n";

}  // namespace

TEST_CASE("lifecycle: not initialized, initialize, shutdown, exit 0") {
  LspHarness h;
  h.request(1, "textDocument/inlineCompletion", LspHarness::pos_params(kUri, 0, 0));
  CHECK(code_of(h.reply(1)) == -32002);
  h.notify("textDocument/didOpen", {{"textDocument", {{"uri", kUri}, {"version", 1}, {"text", "x"}}}});
  h.request(2, "initialize",
            {{"processId", 1}, {"capabilities", {{"general", {{"positionEncodings", {"utf-32", "utf-8"}}}}}}});
  auto init = h.reply(2);
  REQUIRE(init.has_value());
  auto caps = (*init)["result"]["capabilities"];
  CHECK(caps["positionEncoding"] == "utf-8");
  CHECK(caps["textDocumentSync"]["change"] == 2);
  CHECK(caps.contains("inlineCompletionProvider"));
  CHECK(caps.contains("completionProvider"));
  CHECK(h.server().documents().size() == 0);  // didOpen before initialize was dropped
  h.request(3, "initialize", {{"capabilities", json::object()}});
  CHECK(code_of(h.reply(3)) == -32600);
  h.request(4, "shutdown", nullptr);
  auto sd = h.reply(4);
  REQUIRE(sd.has_value());
  CHECK((*sd)["result"].is_null());
  h.request(5, "textDocument/completion", LspHarness::pos_params(kUri, 0, 0));
  CHECK(code_of(h.reply(5)) == -32600);
  h.notify("exit", nullptr);
  h.run_until([&] { return h.exit_code().has_value(); });
  CHECK(h.exit_code() == 0);
}

TEST_CASE("exit without shutdown is exit code 1; utf-16 is the default encoding") {
  LspHarness h;
  h.initialize();
  CHECK(h.server().encoding() == PositionEncoding::kUtf16);
  h.notify("exit", nullptr);
  h.run_until([&] { return h.exit_code().has_value(); });
  CHECK(h.exit_code() == 1);
}

TEST_CASE("inline completion and item completion") {
  LspHarness h;
  h.initialize();
  h.open(kUri, kText);
  h.request(10, "textDocument/inlineCompletion", LspHarness::pos_params(kUri, 1, 2));
  auto r = h.reply(10);
  REQUIRE(r.has_value());
  REQUIRE((*r)["result"]["items"].size() == 1);
  auto item = (*r)["result"]["items"][0];
  CHECK(item["insertText"] == "return 42;");  // "}" closes the enclosing block: cut
  CHECK(item["range"]["start"] == json({{"line", 1}, {"character", 2}}));
  // The prompt is FIM over the document, its last prefix token (" ") backed
  // off for token healing: the engine regenerates it, the reply leaves it out.
  CHECK(h.tokenizer().decode(h.engine().last_prompt()) ==
        "<|fim_prefix|>int f() {\n <|fim_suffix|>\n}\n<|fim_middle|>");

  h.open("file:///w/b.cpp", "int g() { ret }\n");
  h.request(11, "textDocument/completion", LspHarness::pos_params("file:///w/b.cpp", 0, 13));
  auto c = h.reply(11);
  REQUIRE(c.has_value());
  REQUIRE((*c)["result"]["items"].size() == 1);
  auto ci = (*c)["result"]["items"][0];
  CHECK(ci["textEdit"]["range"]["start"]["character"] == 10);  // start of "ret"
  CHECK(ci["textEdit"]["range"]["end"]["character"] == 13);
  CHECK(ci["textEdit"]["newText"] == "retreturn 42;");
  CHECK(ci["filterText"] == "ret");
  // Other open documents come first, as repository context.
  CHECK(h.tokenizer().decode(h.engine().last_prompt()).starts_with("<|file_sep|>file:///w/main.cpp\n"));
}

TEST_CASE("typed-through: typing the shown completion hands its rest to the engine as drafts") {
  LspHarness h;
  h.initialize();
  h.open(kUri, kText);
  h.request(10, "textDocument/inlineCompletion", LspHarness::pos_params(kUri, 1, 2));
  REQUIRE(h.reply(10).has_value());
  CHECK(h.engine().last_hint().empty());  // nothing shown yet
  // The user types "ret", the start of the completion on screen.
  h.notify("textDocument/didChange", {{"textDocument", {{"uri", kUri}, {"version", 2}}},
                                      {"contentChanges", {{{"text", "int f() {\n  ret\n}\n"}}}}});
  h.request(11, "textDocument/inlineCompletion", LspHarness::pos_params(kUri, 1, 5));
  REQUIRE(h.reply(11).has_value());
  // The job regenerates the healed last token ("t"), then the rest.
  const std::string hint = h.tokenizer().decode(h.engine().last_hint());
  CHECK(hint.starts_with("turn 42;"));
  // Typing something else: no hint.
  h.notify("textDocument/didChange", {{"textDocument", {{"uri", kUri}, {"version", 3}}},
                                      {"contentChanges", {{{"text", "int f() {\n  retx\n}\n"}}}}});
  h.request(12, "textDocument/inlineCompletion", LspHarness::pos_params(kUri, 1, 6));
  REQUIRE(h.reply(12).has_value());
  CHECK(h.engine().last_hint().empty());
}

TEST_CASE("cancellation, supersession and edits") {
  LspHarness h("abcdefghijklmnopqrstuvwxyz", 20ms);
  h.initialize();
  h.open(kUri, kText);

  h.request(20, "textDocument/inlineCompletion", LspHarness::pos_params(kUri, 1, 2));
  h.run_for(5ms);
  h.notify("$/cancelRequest", {{"id", 20}});
  CHECK(code_of(h.reply(20)) == -32800);

  h.request(21, "textDocument/inlineCompletion", LspHarness::pos_params(kUri, 1, 2));
  h.request(22, "textDocument/inlineCompletion", LspHarness::pos_params(kUri, 1, 2));
  auto older = h.reply(21, 50ms);  // superseded: empty at once
  REQUIRE(older.has_value());
  CHECK((*older)["result"]["items"].empty());

  h.notify("textDocument/didChange", {{"textDocument", {{"uri", kUri}, {"version", 2}}},
                                      {"contentChanges", {{{"text", "int f() {\n  r\n}\n"}}}}});
  CHECK(code_of(h.reply(22)) == -32801);
  CHECK(h.count_replies(20) == 1);
  CHECK(h.count_replies(21) == 1);
  CHECK(h.count_replies(22) == 1);
  CHECK(h.engine().cancel_calls() >= 3);
}

TEST_CASE("a request past its deadline returns what it has") {
  ServerOptions opts;
  opts.deadline_ms = 200;  // room for the healed " " and a few letters
  LspHarness h("abcdefghijklmnopqrstuvwxyz", 30ms, true, opts);
  h.initialize();
  h.open(kUri, "x = \n");
  h.request(30, "textDocument/inlineCompletion", LspHarness::pos_params(kUri, 0, 4));
  auto r = h.reply(30);
  REQUIRE(r.has_value());
  REQUIRE((*r)["result"]["items"].size() == 1);
  std::string text = (*r)["result"]["items"][0]["insertText"];
  CHECK(text.size() >= 1);
  CHECK(text.size() < 10);
  CHECK(std::string("abcdefghijklmnopqrstuvwxyz").starts_with(text));
}

TEST_CASE("completions while the model loads are empty; progress is reported") {
  LspHarness h("x", 1ms, /*model_ready=*/false);
  h.initialize({{"window", {{"workDoneProgress", true}}}});
  auto sent = h.sent();
  json create;
  for (auto& m : sent) {
    if (m.value("method", "") == "window/workDoneProgress/create") create = m;
  }
  REQUIRE(create.is_object());
  h.send({{"jsonrpc", "2.0"}, {"id", create["id"]}, {"result", nullptr}});
  h.open(kUri, kText);
  h.request(40, "textDocument/inlineCompletion", LspHarness::pos_params(kUri, 1, 2));
  auto r = h.reply(40);
  REQUIRE(r.has_value());
  CHECK((*r)["result"]["items"].empty());
  h.model().report_progress(50, "weights");
  auto status = h.model().set_ready("m", make_tokenizer_view(h.tokenizer()));
  CHECK(status.ok());
  std::vector<std::string> kinds;
  h.run_until([&] {
    kinds.clear();
    for (auto& m : h.sent()) {
      if (m.value("method", "") == "$/progress") kinds.push_back(m["params"]["value"]["kind"]);
    }
    return !kinds.empty() && kinds.back() == "end";
  });
  CHECK(kinds.front() == "begin");
  CHECK(kinds.back() == "end");
  h.request(41, "textDocument/inlineCompletion", LspHarness::pos_params(kUri, 1, 2));
  auto r2 = h.reply(41);
  REQUIRE(r2.has_value());
  CHECK((*r2)["result"]["items"].size() == 1);
}

TEST_CASE("bad input gets the spec's errors and the server keeps serving") {
  ServerOptions opts;
  opts.max_message_bytes = 1024;
  LspHarness h("return 42;", 1ms, true, opts);
  h.initialize();
  h.send_raw("Content-Length: 5\r\n\r\n{bad}");
  h.send_raw("Content-Length: 2\r\n\r\n[]");
  h.send_raw("Content-Type: x\r\n\r\n");
  h.send_raw("Content-Length: 5000\r\n\r\n");  // too large: skipped as it streams in
  for (int i = 0; i < 5; ++i) h.send_raw(std::string(1000, 'x'));
  h.request(50, "no/such/method", json::object());
  h.request(51, "textDocument/inlineCompletion", {{"textDocument", {{"uri", 5}}}});
  h.request(52, "textDocument/inlineCompletion", LspHarness::pos_params("file:///nope", 0, 0));
  h.run_for(5ms);
  auto sent = h.sent();
  std::vector<int> null_id_codes;
  for (auto& m : sent) {
    if (m.contains("error") && m["id"].is_null()) null_id_codes.push_back(m["error"]["code"]);
  }
  CHECK(null_id_codes == std::vector<int>{-32700, -32600, -32700, -32600});
  CHECK(code_of(h.reply(50)) == -32601);
  auto wrong = h.reply(51);
  CHECK(code_of(wrong) == -32602);
  CHECK((*wrong)["error"]["message"] == "textDocument.uri: expected a string");
  auto unknown = h.reply(52);
  CHECK(code_of(unknown) == -32602);
  CHECK((*unknown)["error"]["message"].get<std::string>().find("file:///nope") != std::string::npos);
  h.open(kUri, kText);
  h.request(53, "textDocument/inlineCompletion", LspHarness::pos_params(kUri, 1, 2));
  auto ok = h.reply(53);
  REQUIRE(ok.has_value());
  CHECK((*ok)["result"]["items"].size() == 1);
}

TEST_CASE("out-of-range positions clamp; invalid UTF-8 is replaced") {
  LspHarness h;
  h.initialize();
  h.transport().push_message(std::string("{\"jsonrpc\":\"2.0\",\"method\":\"textDocument/didOpen\",\"params\":"
                                         "{\"textDocument\":{\"uri\":\"file:///u\",\"version\":1,\"text\":\"a\xff\\n\"}}}"));
  h.run_for(2ms);
  const Document* d = h.server().documents().find("file:///u");
  REQUIRE(d != nullptr);
  CHECK(d->text().str() == "a\xEF\xBF\xBD\n");
  h.request(60, "textDocument/inlineCompletion", LspHarness::pos_params("file:///u", 99, 99));
  auto r = h.reply(60);
  REQUIRE(r.has_value());
  REQUIRE(r->contains("result"));
  h.notify("textDocument/didChange",
           {{"textDocument", {{"uri", "file:///u"}, {"version", 2}}},
            {"contentChanges", {{{"range", {{"start", {{"line", 0}, {"character", 50}}}, {"end", {{"line", 9}, {"character", 0}}}}}, {"text", "Z"}}}}});
  h.run_for(2ms);
  CHECK(d->text().str() == "a\xEF\xBF\xBDZ");
}

TEST_CASE("a flood of 10,000 requests: every one answered exactly once") {
  LspHarness h("abc", 1ms);
  h.initialize();
  h.open(kUri, kText);
  std::string burst;
  for (int i = 0; i < 10000; ++i) {
    json msg = {{"jsonrpc", "2.0"}, {"id", 1000 + i}, {"method", i % 3 == 0 ? "textDocument/completion" : "textDocument/inlineCompletion"},
                {"params", LspHarness::pos_params(kUri, 1, 2)}};
    burst += encode_frame(msg.dump());
  }
  h.send_raw(burst);
  std::vector<int> seen(10000, 0);
  bool all = h.run_until([&] {
    std::fill(seen.begin(), seen.end(), 0);
    for (auto& s : h.transport().sent()) {
      auto j = json::parse(s);
      if (j.contains("id") && j["id"].is_number_integer() && !j.contains("method")) {
        int id = j["id"].get<int>() - 1000;
        if (id >= 0 && id < 10000) ++seen[static_cast<size_t>(id)];
      }
    }
    return std::all_of(seen.begin(), seen.end(), [](int n) { return n >= 1; });
  }, 20s);
  CHECK(all);
  CHECK(std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; }));
  h.request(99, "shutdown", nullptr);
  CHECK(h.reply(99).has_value());
}

TEST_CASE("the metrics log has a line for every completion request, including those before the model is ready") {
  std::string path = std::string(GHOSTD_BINARY_DIR) + "/lsp_metrics_" + std::to_string(::getpid()) + ".jsonl";
  std::remove(path.c_str());
  {
    auto log = MetricsLog::open(path, std::chrono::milliseconds(50));
    REQUIRE(log.ok());
    LspHarness h("x", 1ms, /*model_ready=*/false, {}, log->get());
    h.initialize();
    h.open(kUri, kText);
    h.request(50, "textDocument/inlineCompletion", LspHarness::pos_params(kUri, 1, 2));
    REQUIRE(h.reply(50).has_value());
    REQUIRE(h.model().set_ready("m", make_tokenizer_view(h.tokenizer())).ok());
    h.request(51, "textDocument/inlineCompletion", LspHarness::pos_params(kUri, 1, 2));
    REQUIRE(h.reply(51).has_value());
  }
  std::ifstream in(path);
  std::map<std::string, std::string> outcome;
  for (std::string line; std::getline(in, line);) {
    auto j = json::parse(line);
    if (j["type"] == "completion") outcome[j["request_id"].get<std::string>()] = j["outcome"];
  }
  CHECK(outcome.size() == 2);
  CHECK(outcome["50"] == "no_model");
  CHECK(outcome["51"] == "ok");
  std::remove(path.c_str());
}

namespace {
const char* kTokens = "alice aaaaaaaaaaaaaaaa1\nbob bbbbbbbbbbbbbbbb2\n";

SessionContext remote(const TokenTable* tokens, AuthThrottle* throttle, uint64_t id = 7) {
  SessionContext c;
  c.id = id;
  c.remote = true;
  c.peer = "192.0.2.1";
  c.tokens = tokens;
  c.throttle = throttle;
  return c;
}

json init_params(const json& options) {
  return {{"processId", nullptr}, {"capabilities", json::object()}, {"initializationOptions", options}};
}
}  // namespace

TEST_CASE("remote sessions: before a valid token only initialize gets through") {
  auto tokens = TokenTable::parse(kTokens, "t");
  REQUIRE(tokens.ok());
  struct Case {
    const char* name;
    json first;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"completion first", {{"jsonrpc", "2.0"}, {"id", 3}, {"method", "textDocument/completion"}, {"params", json::object()}},
       "authentication required: the first message must be 'initialize' with initializationOptions.token"},
      {"notification first", {{"jsonrpc", "2.0"}, {"method", "initialized"}, {"params", json::object()}},
       "authentication required: the first message must be 'initialize' with initializationOptions.token"},
      {"no token", {{"jsonrpc", "2.0"}, {"id", 1}, {"method", "initialize"}, {"params", init_params(nullptr)}},
       "authentication required: initializationOptions.token is missing"},
      {"wrong token",
       {{"jsonrpc", "2.0"}, {"id", 1}, {"method", "initialize"}, {"params", init_params({{"token", "nope"}})}},
       "authentication failed: unknown token"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    AuthThrottle throttle;
    testing::LspHarness h("x", 1ms, true, {}, nullptr, remote(&*tokens, &throttle));
    h.send(c.first);
    REQUIRE(h.run_until([&] { return h.exit_code().has_value(); }));
    CHECK(*h.exit_code() == 1);
    CHECK(h.transport().closed());
    auto sent = h.sent();
    REQUIRE(sent.size() == 1);
    CHECK(sent[0]["error"]["code"] == -32001);
    CHECK(sent[0]["error"]["message"] == c.message);
    CHECK(sent[0]["id"] == (c.first.contains("id") ? c.first["id"] : json(nullptr)));
    // Only a checked token counts as a failure for the back-off.
    const bool checked = c.first.value("method", "") == "initialize";
    CHECK((throttle.delay("192.0.2.1", AuthThrottle::Clock::now()).count() > 0) == checked);
    CHECK(h.engine().submitted() == 0);
  }
  // Garbage before authentication: an error, then the close.
  AuthThrottle throttle;
  testing::LspHarness g("x", 1ms, true, {}, nullptr, remote(&*tokens, &throttle));
  g.send_raw("Content-Length: nope\r\n\r\n{}");
  REQUIRE(g.run_until([&] { return g.exit_code().has_value(); }));
  CHECK(g.sent().at(0)["error"]["code"] == -32001);
}

TEST_CASE("remote sessions: the token's tenant goes with every job; models only by name") {
  auto tokens = TokenTable::parse(kTokens, "t");
  REQUIRE(tokens.ok());
  AuthThrottle throttle;
  ServerOptions o;
  o.named_models = {{"small", "/models/small"}};
  testing::LspHarness h("x", 1ms, true, o, nullptr, remote(&*tokens, &throttle, 42));
  h.request(1, "initialize", init_params({{"token", "bbbbbbbbbbbbbbbb2"}, {"model", "/etc/passwd"}}));
  auto r = h.reply(1);
  REQUIRE(r);
  CHECK((*r)["error"]["code"] == -32602);
  CHECK((*r)["error"]["message"] ==
        "initializationOptions.model: unknown model '/etc/passwd'; this server offers: small (remote sessions select "
        "models by name)");
  CHECK_FALSE(h.exit_code().has_value());  // authenticated: it may initialize again
  h.request(2, "initialize", init_params({{"model", "small"}}));
  r = h.reply(2);
  REQUIRE(r);
  CHECK(r->contains("result"));
  CHECK(h.server().tenant() == "bob");
  h.notify("initialized", json::object());
  h.open("file:///a.cpp", "int main() {\n");
  h.request(3, "textDocument/inlineCompletion", testing::LspHarness::pos_params("file:///a.cpp", 1, 0));
  REQUIRE(h.reply(3));
  auto owner = h.engine().last_owner();
  CHECK(owner.tenant == "bob");
  CHECK(owner.cache_salt == "bob");
  CHECK(owner.session == 42);
}

TEST_CASE("the per-session request rate limit refuses a burst's excess, supersedes nothing, and refills") {
  ServerOptions o;
  o.max_requests_per_second = 2;
  testing::LspHarness h("return 1;", 20ms, true, o);
  h.initialize();
  h.open("file:///a.cpp", "int a;\n");
  h.open("file:///b.cpp", "int b;\n");
  // A burst of two passes (on two documents, so neither supersedes the
  // other); the third is refused at once.
  h.request(1, "textDocument/inlineCompletion", testing::LspHarness::pos_params("file:///a.cpp", 1, 0));
  h.request(2, "textDocument/inlineCompletion", testing::LspHarness::pos_params("file:///b.cpp", 1, 0));
  h.request(3, "textDocument/inlineCompletion", testing::LspHarness::pos_params("file:///b.cpp", 1, 0));
  auto r = h.reply(3);
  REQUIRE(r);
  CHECK((*r)["error"]["code"] == -32803);
  CHECK((*r)["error"]["message"] ==
        "too many requests: more than 2 completions a second, the session's limit (--max-requests-per-second); "
        "slow down");
  // The refused request superseded nothing: request 2 is answered with its completion.
  r = h.reply(2);
  REQUIRE(r);
  REQUIRE(r->contains("result"));
  CHECK(!(*r)["result"]["items"].empty());
  REQUIRE(h.reply(1));
  // Half a second later one more token has come back.
  std::this_thread::sleep_for(600ms);
  h.request(4, "textDocument/inlineCompletion", testing::LspHarness::pos_params("file:///a.cpp", 1, 0));
  r = h.reply(4);
  REQUIRE(r);
  CHECK(r->contains("result"));
}

TEST_CASE("per-session limits answer clear errors and the session goes on") {
  ServerOptions o;
  o.max_documents = 2;
  o.max_document_bytes = 64;
  o.max_requests_in_flight = 1;
  testing::LspHarness h("return 1;", 20ms, true, o);
  h.initialize();
  h.open("file:///a.cpp", "int a;\n");
  h.open("file:///b.cpp", "int b;\n");
  h.open("file:///c.cpp", "int c;\n");  // a third document: over the count
  h.request(1, "textDocument/inlineCompletion", testing::LspHarness::pos_params("file:///c.cpp", 1, 0));
  auto r = h.reply(1);
  REQUIRE(r);
  CHECK((*r)["error"]["message"] ==
        "document file:///c.cpp is not open: the session has 2 open documents, the limit (--max-open-documents)");
  // An edit past the byte limit drops the document.
  h.notify("textDocument/didChange",
           {{"textDocument", {{"uri", "file:///b.cpp"}, {"version", 2}}},
            {"contentChanges", {{{"text", std::string(100, 'x')}}}}});
  h.request(2, "textDocument/inlineCompletion", testing::LspHarness::pos_params("file:///b.cpp", 0, 0));
  r = h.reply(2);
  REQUIRE(r);
  CHECK((*r)["error"]["message"].get<std::string>().find("--max-document-bytes") != std::string::npos);
  // One in flight: a second request on another document is refused, the first answered.
  h.open("file:///d.cpp", "int d;\n");
  h.request(3, "textDocument/inlineCompletion", testing::LspHarness::pos_params("file:///a.cpp", 1, 0));
  h.request(4, "textDocument/inlineCompletion", testing::LspHarness::pos_params("file:///d.cpp", 1, 0));
  r = h.reply(4);
  REQUIRE(r);
  CHECK((*r)["error"]["code"] == -32803);
  CHECK((*r)["error"]["message"] ==
        "too many requests in flight: 1 unanswered completions, the session's limit (--max-requests-in-flight); wait "
        "for answers");
  r = h.reply(3);
  REQUIRE(r);
  CHECK(r->contains("result"));
  // Room again: closing a document frees its count and bytes.
  h.notify("textDocument/didClose", {{"textDocument", {{"uri", "file:///a.cpp"}}}});
  h.open("file:///e.cpp", "int e;\n");
  h.request(5, "textDocument/inlineCompletion", testing::LspHarness::pos_params("file:///e.cpp", 1, 0));
  r = h.reply(5);
  REQUIRE(r);
  CHECK(r->contains("result"));
}
