// LSP structures and their JSON conversion, all in one place (clangd's
// Protocol.h). Parsing returns Result<T>; an error names the offending field
// ("textDocument.uri: expected a string") and becomes InvalidParams.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "runtime/core/result.h"
#include "server/documents.h"

namespace ghostd::server {

using json = nlohmann::json;
template <class T>
using Result = ghostd::runtime::Result<T>;

struct TextDocumentItem {
  std::string uri;
  std::string language_id;
  int64_t version = 0;
  std::string text;
};

struct DidOpenParams {
  TextDocumentItem text_document;
};

struct DidChangeParams {
  std::string uri;
  int64_t version = 0;
  std::vector<TextChange> changes;
};

struct DidCloseParams {
  std::string uri;
};

struct DidSaveParams {
  std::string uri;
  std::optional<std::string> text;
};

struct InitializeParams {
  std::optional<int64_t> process_id;
  std::string client_name;
  std::vector<std::string> position_encodings;  // capabilities.general.positionEncodings
  bool work_done_progress = false;              // capabilities.window.workDoneProgress
  std::string trace = "off";
  json initialization_options;                  // null when absent
};

// Where a completion was asked for and why.
struct DocumentPositionParams {
  std::string uri;
  TextPosition position;
  int trigger_kind = 0;  // inline: 1 invoked, 2 automatic; completion: 1 invoked, 2 char, 3 incomplete
  std::string trigger_character;
};

struct InlineCompletionItem {
  std::string insert_text;
  TextRange range;
};

struct CompletionItem {
  std::string label;
  std::string filter_text;
  TextRange range;
  std::string new_text;
};

Result<TextPosition> parse_position(const json& j, const std::string& path);
Result<TextRange> parse_range(const json& j, const std::string& path);
Result<DidOpenParams> parse_did_open(const json& params);
Result<DidChangeParams> parse_did_change(const json& params);
Result<DidCloseParams> parse_did_close(const json& params);
Result<DidSaveParams> parse_did_save(const json& params);
Result<InitializeParams> parse_initialize(const json& params);
// textDocument/inlineCompletion and textDocument/completion share this shape.
Result<DocumentPositionParams> parse_document_position(const json& params);
// $/cancelRequest: the id as it appeared (integer or string).
Result<json> parse_cancel(const json& params);

json to_json(const TextPosition& p);
json to_json(const TextRange& r);
json to_json(const InlineCompletionItem& item);
json to_json(const CompletionItem& item);

}  // namespace ghostd::server
