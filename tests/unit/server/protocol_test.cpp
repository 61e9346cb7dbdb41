#include "server/protocol.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace ghostd::server;

TEST_CASE("wrong parameter types name the field") {
  struct Case {
    const char* params;
    const char* which;  // parser
    const char* message;
  };
  const std::vector<Case> cases = {
      {R"(5)", "open", "params: expected an object"},
      {R"({})", "open", "textDocument: expected an object"},
      {R"({"textDocument":{"uri":3}})", "open", "textDocument.uri: expected a string"},
      {R"({"textDocument":{"uri":"u","version":"1","text":""}})", "open", "textDocument.version: expected an integer"},
      {R"({"textDocument":{"uri":"u","version":1}})", "change", "contentChanges: expected an array"},
      {R"({"textDocument":{"uri":"u"},"contentChanges":[{"text":1}]})", "change",
       "contentChanges[0].text: expected a string"},
      {R"({"textDocument":{"uri":"u"},"contentChanges":[{"text":"","range":{"start":{"line":0}}}]})", "change",
       "contentChanges[0].range.start.character: expected an integer"},
      {R"({"textDocument":{"uri":"u"},"position":{"line":-1,"character":0}})", "position",
       "position: line and character must be non-negative"},
      {R"({"textDocument":{"uri":"u"},"position":[0,0]})", "position", "position: expected a Position object"},
      {R"({"textDocument":{"uri":"u"},"position":{"line":0,"character":0},"context":{"triggerKind":"x"}})",
       "position", "context.triggerKind: expected an integer"},
      {R"({"capabilities":{"general":{"positionEncodings":"utf-8"}}})", "initialize",
       "capabilities.general.positionEncodings: expected an array of strings"},
      {R"({"processId":"x"})", "initialize", "processId: expected an integer"},
      {R"({"id":1.5})", "cancel", "id: expected an integer or a string"},
  };
  for (const auto& c : cases) {
    json p = json::parse(c.params);
    std::string which = c.which;
    std::string msg;
    if (which == "open") msg = parse_did_open(p).error().message;
    if (which == "change") msg = parse_did_change(p).error().message;
    if (which == "position") msg = parse_document_position(p).error().message;
    if (which == "initialize") msg = parse_initialize(p).error().message;
    if (which == "cancel") msg = parse_cancel(p).error().message;
    CHECK(msg == c.message);
  }
}

TEST_CASE("well-formed params parse") {
  auto init = parse_initialize(json::parse(R"({"processId":null,"capabilities":{"general":{"positionEncodings":
      ["utf-8","utf-16"]},"window":{"workDoneProgress":true}},"initializationOptions":{"maxTokens":5}})"));
  REQUIRE(init.ok());
  CHECK(init->position_encodings == std::vector<std::string>{"utf-8", "utf-16"});
  CHECK(init->work_done_progress);
  CHECK(init->initialization_options["maxTokens"] == 5);

  auto change = parse_did_change(json::parse(R"({"textDocument":{"uri":"u","version":3},"contentChanges":[
      {"range":{"start":{"line":0,"character":1},"end":{"line":0,"character":2}},"text":"x"},{"text":"all"}]})"));
  REQUIRE(change.ok());
  CHECK(change->version == 3);
  REQUIRE(change->changes.size() == 2);
  CHECK(change->changes[0].range->start.character == 1);
  CHECK_FALSE(change->changes[1].range.has_value());

  auto pos = parse_document_position(json::parse(
      R"({"textDocument":{"uri":"u"},"position":{"line":2,"character":3},"context":{"triggerKind":2}})"));
  REQUIRE(pos.ok());
  CHECK(pos->trigger_kind == 2);
  CHECK(to_json(InlineCompletionItem{"abc", {{1, 2}, {1, 2}}})["range"]["start"]["character"] == 2);
  CHECK(to_json(CompletionItem{"l", "f", {{0, 0}, {0, 1}}, "new"})["textEdit"]["newText"] == "new");
}
