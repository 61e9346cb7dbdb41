#include "server/protocol.h"

namespace ghostd::server {

using ghostd::runtime::Error;

namespace {

std::string join(const std::string& path, const char* key) { return path.empty() ? key : path + "." + key; }

Error type_error(const std::string& field, const char* expected) {
  return Error{field + ": expected " + expected};
}

// The member `key` of object `j`, or null when absent.
const json* member(const json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

Result<const json*> object_at(const json& j, const char* key, const std::string& path) {
  const json* m = member(j, key);
  if (!m || !m->is_object()) return type_error(join(path, key), "an object");
  return m;
}

Result<std::string> string_at(const json& j, const char* key, const std::string& path) {
  const json* m = member(j, key);
  if (!m || !m->is_string()) return type_error(join(path, key), "a string");
  return m->get<std::string>();
}

Result<int64_t> int_at(const json& j, const char* key, const std::string& path) {
  const json* m = member(j, key);
  if (!m || !m->is_number_integer()) return type_error(join(path, key), "an integer");
  return m->get<int64_t>();
}

// Optional members: absent or null is fine, a wrong type is not.
Result<std::optional<int64_t>> opt_int_at(const json& j, const char* key, const std::string& path) {
  const json* m = member(j, key);
  if (!m || m->is_null()) return std::optional<int64_t>();
  if (!m->is_number_integer()) return type_error(join(path, key), "an integer");
  return std::optional<int64_t>(m->get<int64_t>());
}

Result<std::optional<std::string>> opt_string_at(const json& j, const char* key, const std::string& path) {
  const json* m = member(j, key);
  if (!m || m->is_null()) return std::optional<std::string>();
  if (!m->is_string()) return type_error(join(path, key), "a string");
  return std::optional<std::string>(m->get<std::string>());
}

Result<const json*> params_object(const json& params) {
  if (!params.is_object()) return Error{"params: expected an object"};
  return &params;
}

Result<std::string> document_uri(const json& params) {
  auto td = object_at(params, "textDocument", "");
  if (!td.ok()) return td.error();
  return string_at(**td, "uri", "textDocument");
}

}  // namespace

Result<TextPosition> parse_position(const json& j, const std::string& path) {
  if (!j.is_object()) return type_error(path, "a Position object");
  auto line = int_at(j, "line", path);
  if (!line.ok()) return line.error();
  auto ch = int_at(j, "character", path);
  if (!ch.ok()) return ch.error();
  if (*line < 0 || *ch < 0) return Error{path + ": line and character must be non-negative"};
  return TextPosition{*line, *ch};
}

Result<TextRange> parse_range(const json& j, const std::string& path) {
  if (!j.is_object()) return type_error(path, "a Range object");
  const json* s = member(j, "start");
  const json* e = member(j, "end");
  auto start = parse_position(s ? *s : json(), join(path, "start"));
  if (!start.ok()) return start.error();
  auto end = parse_position(e ? *e : json(), join(path, "end"));
  if (!end.ok()) return end.error();
  return TextRange{*start, *end};
}

Result<DidOpenParams> parse_did_open(const json& params) {
  if (auto p = params_object(params); !p.ok()) return p.error();
  auto td = object_at(params, "textDocument", "");
  if (!td.ok()) return td.error();
  const json& t = **td;
  DidOpenParams out;
  auto uri = string_at(t, "uri", "textDocument");
  if (!uri.ok()) return uri.error();
  auto lang = opt_string_at(t, "languageId", "textDocument");
  if (!lang.ok()) return lang.error();
  auto version = int_at(t, "version", "textDocument");
  if (!version.ok()) return version.error();
  auto text = string_at(t, "text", "textDocument");
  if (!text.ok()) return text.error();
  out.text_document = {std::move(*uri), lang->value_or(""), *version, std::move(*text)};
  return out;
}

Result<DidChangeParams> parse_did_change(const json& params) {
  if (auto p = params_object(params); !p.ok()) return p.error();
  auto td = object_at(params, "textDocument", "");
  if (!td.ok()) return td.error();
  DidChangeParams out;
  auto uri = string_at(**td, "uri", "textDocument");
  if (!uri.ok()) return uri.error();
  out.uri = std::move(*uri);
  auto version = opt_int_at(**td, "version", "textDocument");
  if (!version.ok()) return version.error();
  out.version = version->value_or(0);
  const json* changes = member(params, "contentChanges");
  if (!changes || !changes->is_array()) return type_error("contentChanges", "an array");
  for (size_t i = 0; i < changes->size(); ++i) {
    const json& c = (*changes)[i];
    std::string path = "contentChanges[" + std::to_string(i) + "]";
    if (!c.is_object()) return type_error(path, "an object");
    TextChange change;
    auto text = string_at(c, "text", path);
    if (!text.ok()) return text.error();
    change.text = std::move(*text);
    if (const json* r = member(c, "range"); r && !r->is_null()) {
      auto range = parse_range(*r, path + ".range");
      if (!range.ok()) return range.error();
      change.range = *range;
    }
    out.changes.push_back(std::move(change));
  }
  return out;
}

Result<DidCloseParams> parse_did_close(const json& params) {
  if (auto p = params_object(params); !p.ok()) return p.error();
  auto uri = document_uri(params);
  if (!uri.ok()) return uri.error();
  return DidCloseParams{std::move(*uri)};
}

Result<DidSaveParams> parse_did_save(const json& params) {
  if (auto p = params_object(params); !p.ok()) return p.error();
  auto uri = document_uri(params);
  if (!uri.ok()) return uri.error();
  auto text = opt_string_at(params, "text", "");
  if (!text.ok()) return text.error();
  return DidSaveParams{std::move(*uri), std::move(*text)};
}

Result<InitializeParams> parse_initialize(const json& params) {
  if (auto p = params_object(params); !p.ok()) return p.error();
  InitializeParams out;
  auto pid = opt_int_at(params, "processId", "");
  if (!pid.ok()) return pid.error();
  out.process_id = *pid;
  if (const json* info = member(params, "clientInfo"); info && info->is_object()) {
    auto name = opt_string_at(*info, "name", "clientInfo");
    if (!name.ok()) return name.error();
    out.client_name = name->value_or("");
  }
  if (const json* caps = member(params, "capabilities"); caps && !caps->is_null()) {
    if (!caps->is_object()) return type_error("capabilities", "an object");
    if (const json* general = member(*caps, "general"); general && general->is_object()) {
      if (const json* enc = member(*general, "positionEncodings"); enc && !enc->is_null()) {
        if (!enc->is_array()) return type_error("capabilities.general.positionEncodings", "an array of strings");
        for (const auto& e : *enc) {
          if (!e.is_string()) return type_error("capabilities.general.positionEncodings", "an array of strings");
          out.position_encodings.push_back(e.get<std::string>());
        }
      }
    }
    if (const json* window = member(*caps, "window"); window && window->is_object()) {
      if (const json* wdp = member(*window, "workDoneProgress"); wdp && wdp->is_boolean()) {
        out.work_done_progress = wdp->get<bool>();
      }
    }
  }
  auto trace = opt_string_at(params, "trace", "");
  if (!trace.ok()) return trace.error();
  out.trace = trace->value_or("off");
  if (const json* opts = member(params, "initializationOptions")) out.initialization_options = *opts;
  return out;
}

Result<DocumentPositionParams> parse_document_position(const json& params) {
  if (auto p = params_object(params); !p.ok()) return p.error();
  auto uri = document_uri(params);
  if (!uri.ok()) return uri.error();
  const json* pos = member(params, "position");
  auto position = parse_position(pos ? *pos : json(), "position");
  if (!position.ok()) return position.error();
  DocumentPositionParams out{std::move(*uri), *position, 0, {}};
  if (const json* ctx = member(params, "context"); ctx && !ctx->is_null()) {
    if (!ctx->is_object()) return type_error("context", "an object");
    auto kind = opt_int_at(*ctx, "triggerKind", "context");
    if (!kind.ok()) return kind.error();
    out.trigger_kind = static_cast<int>(kind->value_or(0));
    auto ch = opt_string_at(*ctx, "triggerCharacter", "context");
    if (!ch.ok()) return ch.error();
    out.trigger_character = ch->value_or("");
  }
  return out;
}

Result<json> parse_cancel(const json& params) {
  const json* id = member(params, "id");
  if (!id || !(id->is_number_integer() || id->is_string())) return type_error("id", "an integer or a string");
  return *id;
}

json to_json(const TextPosition& p) { return {{"line", p.line}, {"character", p.character}}; }

json to_json(const TextRange& r) { return {{"start", to_json(r.start)}, {"end", to_json(r.end)}}; }

json to_json(const InlineCompletionItem& item) {
  return {{"insertText", item.insert_text}, {"range", to_json(item.range)}};
}

json to_json(const CompletionItem& item) {
  return {
      {"label", item.label},
      {"kind", 1},  // Text
      {"filterText", item.filter_text},
      {"insertTextFormat", 1},  // PlainText
      {"textEdit", {{"range", to_json(item.range)}, {"newText", item.new_text}}},
      {"detail", "ghostd"},
  };
}

}  // namespace ghostd::server
