#include "server/jsonrpc.h"

#include <spdlog/spdlog.h>

#include <optional>

#include "server/utf8.h"

namespace ghostd::server {

std::string dump_json(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string make_response(const json& id, const RpcResult& result) {
  json msg = {{"jsonrpc", "2.0"}, {"id", id}};
  if (result.ok()) {
    msg["result"] = result.value();
  } else {
    msg["error"] = {{"code", static_cast<int>(result.error().code)}, {"message", result.error().message}};
  }
  return dump_json(msg);
}

std::string make_notification(std::string_view method, const json& params) {
  json msg = {{"jsonrpc", "2.0"}, {"method", method}};
  if (!params.is_null()) msg["params"] = params;
  return dump_json(msg);
}

std::string make_request(const json& id, std::string_view method, const json& params) {
  json msg = {{"jsonrpc", "2.0"}, {"id", id}, {"method", method}};
  if (!params.is_null()) msg["params"] = params;
  return dump_json(msg);
}

ReplyOnce::ReplyOnce(json id, std::string method, std::shared_ptr<SendFn> send)
    : id_(std::move(id)), method_(std::move(method)), send_(std::move(send)), replied_(false) {}

ReplyOnce::ReplyOnce(ReplyOnce&& other) noexcept
    : id_(std::move(other.id_)),
      method_(std::move(other.method_)),
      send_(std::move(other.send_)),
      replied_(other.replied_) {
  other.replied_ = true;
}

ReplyOnce& ReplyOnce::operator=(ReplyOnce&& other) noexcept {
  if (this != &other) {
    if (!replied_) (*this)(RpcError{ErrorCode::kInternalError, "server dropped the request"});
    id_ = std::move(other.id_);
    method_ = std::move(other.method_);
    send_ = std::move(other.send_);
    replied_ = other.replied_;
    other.replied_ = true;
  }
  return *this;
}

ReplyOnce::~ReplyOnce() {
  if (!replied_) {
    (*this)(RpcError{ErrorCode::kInternalError, "server failed to reply to " + method_});
  }
}

void ReplyOnce::operator()(RpcResult result) {
  if (replied_) {
    spdlog::error("second reply to {} dropped", method_);
    return;
  }
  replied_ = true;
  if (send_ && *send_) (*send_)(make_response(id_, result));
}

Dispatcher::Dispatcher(SendFn send) : send_(std::make_shared<SendFn>(std::move(send))) {}

void Dispatcher::on_request(std::string method, RequestHandler handler) {
  requests_[std::move(method)] = std::move(handler);
}

void Dispatcher::on_notification(std::string method, NotificationHandler handler) {
  notifications_[std::move(method)] = std::move(handler);
}

void Dispatcher::send_error(ErrorCode code, std::string message, const json& id) {
  (*send_)(make_response(id, RpcError{code, std::move(message)}));
}

void Dispatcher::notify(std::string_view method, const json& params) {
  (*send_)(make_notification(method, params));
}

void Dispatcher::call(std::string_view method, const json& params, ResponseHandler on_response) {
  int64_t id = next_call_id_++;
  calls_[id] = std::move(on_response);
  (*send_)(make_request(id, method, params));
}

void Dispatcher::dispatch(std::string_view body) {
  json message = json::parse(body, nullptr, false);
  if (message.is_discarded()) {
    // Bad UTF-8 inside strings is repaired rather than failing the whole message.
    std::string repaired = sanitize_utf8(body);
    if (repaired != body) message = json::parse(repaired, nullptr, false);
  }
  if (message.is_discarded()) {
    send_error(ErrorCode::kParseError, "message is not valid JSON");
    return;
  }
  dispatch_json(message);
}

void Dispatcher::dispatch_json(const json& message) {
  if (!message.is_object()) {
    // Batches were removed from LSP; any non-object is an invalid request.
    send_error(ErrorCode::kInvalidRequest, "message is not a JSON object");
    return;
  }
  auto id_it = message.find("id");
  json id = id_it == message.end() ? json() : *id_it;
  bool id_ok = id_it != message.end() && (id.is_string() || id.is_number_integer());
  if (auto v = message.find("jsonrpc"); v == message.end() || *v != "2.0") {
    // Not JSON-RPC 2.0: an error for requests (and malformed input), silence for replies.
    if (!message.contains("method") && (message.contains("result") || message.contains("error"))) return;
    if (id_it != message.end() || !message.contains("method")) {
      send_error(ErrorCode::kInvalidRequest, "field 'jsonrpc' must be \"2.0\"", id_ok ? id : json());
    }
    return;
  }
  auto method_it = message.find("method");
  if (method_it == message.end()) {
    if (message.contains("result") || message.contains("error")) {
      handle_response(message);
      return;
    }
    send_error(ErrorCode::kInvalidRequest, "message has neither 'method' nor 'result'/'error'",
               id_ok ? id : json());
    return;
  }
  if (!method_it->is_string()) {
    send_error(ErrorCode::kInvalidRequest, "field 'method' must be a string", id_ok ? id : json());
    return;
  }
  std::string method = *method_it;
  auto params_it = message.find("params");
  json params = params_it == message.end() ? json() : *params_it;
  if (!params.is_null() && !params.is_object() && !params.is_array()) {
    if (id_it != message.end()) {
      send_error(ErrorCode::kInvalidRequest, "field 'params' must be an object or array", id_ok ? id : json());
    }
    return;
  }
  if (id_it != message.end()) {
    if (!id_ok) {
      send_error(ErrorCode::kInvalidRequest, "field 'id' must be an integer or a string");
      return;
    }
    handle_request(id, method, params);
    return;
  }
  if (notification_gate_ && !notification_gate_(method)) return;
  auto it = notifications_.find(method);
  if (it == notifications_.end()) {
    // Unknown notifications are ignored; "$/" ones may be ignored silently.
    if (!method.starts_with("$/")) spdlog::debug("ignoring unknown notification {}", method);
    return;
  }
  try {
    it->second(params);
  } catch (const std::exception& e) {
    spdlog::error("notification {} failed: {}", method, e.what());
  }
}

void Dispatcher::handle_request(const json& id, const std::string& method, const json& params) {
  ReplyOnce reply(id, method, send_);
  if (request_gate_) {
    if (auto err = request_gate_(method)) {
      reply(std::move(*err));
      return;
    }
  }
  auto it = requests_.find(method);
  if (it == requests_.end()) {
    reply(RpcError{ErrorCode::kMethodNotFound, "method not found: " + method});
    return;
  }
  try {
    it->second(params, std::move(reply));
  } catch (const std::exception& e) {
    // The handler's ReplyOnce, if still unanswered, reports InternalError when unwound.
    spdlog::error("request {} failed: {}", method, e.what());
  }
}

void Dispatcher::handle_response(const json& message) {
  auto id_it = message.find("id");
  if (id_it == message.end() || !id_it->is_number_integer()) return;
  auto it = calls_.find(id_it->get<int64_t>());
  if (it == calls_.end()) return;
  ResponseHandler handler = std::move(it->second);
  calls_.erase(it);
  if (auto err = message.find("error"); err != message.end()) {
    RpcError e{ErrorCode::kInternalError, "client error"};
    if (err->is_object()) {
      if (auto c = err->find("code"); c != err->end() && c->is_number_integer()) {
        e.code = static_cast<ErrorCode>(c->get<int>());
      }
      if (auto m = err->find("message"); m != err->end() && m->is_string()) e.message = *m;
    }
    handler(e);
  } else {
    handler(message.value("result", json()));
  }
}

}  // namespace ghostd::server
