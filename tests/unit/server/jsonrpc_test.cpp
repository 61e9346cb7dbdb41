#include "server/jsonrpc.h"

#include <doctest/doctest.h>

#include <optional>
#include <string>
#include <vector>

using namespace ghostd::server;

namespace {

struct Harness {
  std::vector<json> sent;
  Dispatcher d{[this](std::string body) { sent.push_back(json::parse(body)); }};
};

int error_code(const json& reply) { return reply.at("error").at("code").get<int>(); }

}  // namespace

TEST_CASE("dispatch answers malformed messages with the spec's errors") {
  struct Case {
    std::string body;
    int code;
  };
  const std::vector<Case> cases = {
      {"{not json", -32700},
      {"[1,2]", -32600},
      {"42", -32600},
      {R"({"jsonrpc":"1.0","id":1,"method":"echo"})", -32600},
      {R"({"id":1,"method":"echo"})", -32600},
      {R"({"jsonrpc":"2.0","id":1})", -32600},
      {R"({"jsonrpc":"2.0","id":1,"method":5})", -32600},
      {R"({"jsonrpc":"2.0","id":{"a":1},"method":"x"})", -32600},
      {R"({"jsonrpc":"2.0","id":1,"method":"nope"})", -32601},
      {R"({"jsonrpc":"2.0","id":1,"method":"echo","params":3})", -32600},
  };
  for (const auto& c : cases) {
    Harness h;
    h.d.on_request("echo", [](const json& p, ReplyOnce r) { r(p); });
    h.d.dispatch(c.body);
    CAPTURE(c.body);
    REQUIRE(h.sent.size() == 1);
    CHECK(error_code(h.sent[0]) == c.code);
  }
}

TEST_CASE("requests, notifications and responses are routed") {
  Harness h;
  int notified = 0;
  h.d.on_request("echo", [](const json& p, ReplyOnce r) { r(p); });
  h.d.on_notification("note", [&](const json&) { ++notified; });
  h.d.dispatch(R"({"jsonrpc":"2.0","id":"a","method":"echo","params":{"x":1}})");
  h.d.dispatch(R"({"jsonrpc":"2.0","method":"note"})");
  h.d.dispatch(R"({"jsonrpc":"2.0","method":"unknown/notification"})");
  REQUIRE(h.sent.size() == 1);
  CHECK(h.sent[0]["id"] == "a");
  CHECK(h.sent[0]["result"]["x"] == 1);
  CHECK(notified == 1);

  std::optional<RpcResult> got;
  h.d.call("window/workDoneProgress/create", {{"token", "t"}}, [&](RpcResult r) { got = r; });
  REQUIRE(h.sent.size() == 2);
  json id = h.sent[1]["id"];
  CHECK(h.d.pending_calls() == 1);
  h.d.dispatch_json({{"jsonrpc", "2.0"}, {"id", id}, {"result", nullptr}});
  REQUIRE(got.has_value());
  CHECK(got->ok());
  CHECK(h.d.pending_calls() == 0);
}

TEST_CASE("ReplyOnce answers InternalError when dropped, and only once") {
  Harness h;
  std::optional<ReplyOnce> kept;
  h.d.on_request("drop", [](const json&, ReplyOnce) {});
  h.d.on_request("throw", [](const json&, ReplyOnce) { throw std::runtime_error("boom"); });
  h.d.on_request("twice", [](const json&, ReplyOnce r) {
    r(json(1));
    r(json(2));
  });
  h.d.on_request("keep", [&](const json&, ReplyOnce r) { kept.emplace(std::move(r)); });
  h.d.dispatch(R"({"jsonrpc":"2.0","id":1,"method":"drop"})");
  h.d.dispatch(R"({"jsonrpc":"2.0","id":2,"method":"throw"})");
  h.d.dispatch(R"({"jsonrpc":"2.0","id":3,"method":"twice"})");
  h.d.dispatch(R"({"jsonrpc":"2.0","id":4,"method":"keep"})");
  REQUIRE(h.sent.size() == 3);
  CHECK(error_code(h.sent[0]) == -32603);
  CHECK(error_code(h.sent[1]) == -32603);
  CHECK(h.sent[2]["result"] == 1);
  kept.reset();
  REQUIRE(h.sent.size() == 4);
  CHECK(h.sent[3]["id"] == 4);
  CHECK(error_code(h.sent[3]) == -32603);
}

TEST_CASE("invalid UTF-8 inside strings is repaired, not fatal") {
  Harness h;
  h.d.on_request("echo", [](const json& p, ReplyOnce r) { r(p); });
  h.d.dispatch("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":{\"t\":\"a\xff\xc0z\"}}");
  REQUIRE(h.sent.size() == 1);
  CHECK(h.sent[0]["result"]["t"] == "a\xEF\xBF\xBD\xEF\xBF\xBDz");
}

TEST_CASE("request gate refuses requests") {
  Harness h;
  h.d.on_request("x", [](const json&, ReplyOnce r) { r(json(1)); });
  h.d.set_request_gate([](std::string_view m) -> std::optional<RpcError> {
    if (m == "x") return RpcError{ErrorCode::kServerNotInitialized, "not initialized"};
    return std::nullopt;
  });
  h.d.dispatch(R"({"jsonrpc":"2.0","id":1,"method":"x"})");
  REQUIRE(h.sent.size() == 1);
  CHECK(error_code(h.sent[0]) == -32002);
}
