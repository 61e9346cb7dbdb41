// JSON-RPC 2.0 over already-framed messages: classifies requests,
// notifications and responses, dispatches them to handlers, and tracks the
// server's own requests to the client. Only server/ speaks JSON-RPC.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_map>

namespace ghostd::server {

using json = nlohmann::json;

// The spec's error codes (JSON-RPC 2.0 and LSP).
enum class ErrorCode : int {
  kParseError = -32700,
  kInvalidRequest = -32600,
  kMethodNotFound = -32601,
  kInvalidParams = -32602,
  kInternalError = -32603,
  kServerNotInitialized = -32002,
  kUnauthorized = -32001,  // ghostd: missing or wrong initializationOptions.token
  kRequestFailed = -32803,
  kRequestCancelled = -32800,
  kContentModified = -32801,
};

struct RpcError {
  ErrorCode code = ErrorCode::kInternalError;
  std::string message;
};

// A reply payload: a result or an error.
class RpcResult {
 public:
  RpcResult(json value) : value_(std::move(value)) {}       // NOLINT(google-explicit-constructor)
  RpcResult(RpcError error) : error_(std::move(error)), failed_(true) {}  // NOLINT
  bool ok() const { return !failed_; }
  const json& value() const { return value_; }
  const RpcError& error() const { return error_; }

 private:
  json value_;
  RpcError error_;
  bool failed_ = false;
};

// Serializes without throwing: invalid UTF-8 in strings becomes U+FFFD.
std::string dump_json(const json& j);

// Renders one JSON-RPC message body.
std::string make_response(const json& id, const RpcResult& result);
std::string make_notification(std::string_view method, const json& params);
std::string make_request(const json& id, std::string_view method, const json& params);

using SendFn = std::function<void(std::string body)>;

// Answers one request exactly once. Dropping it unanswered sends
// InternalError (clangd's ReplyOnce), so no request goes without a reply.
// Thread-safety: not thread-safe; use and destroy it on the connection's executor.
class ReplyOnce {
 public:
  ReplyOnce(json id, std::string method, std::shared_ptr<SendFn> send);
  ReplyOnce(ReplyOnce&& other) noexcept;
  ReplyOnce& operator=(ReplyOnce&& other) noexcept;
  ReplyOnce(const ReplyOnce&) = delete;
  ReplyOnce& operator=(const ReplyOnce&) = delete;
  ~ReplyOnce();

  void operator()(RpcResult result);
  bool replied() const { return replied_; }
  const json& id() const { return id_; }
  const std::string& method() const { return method_; }

 private:
  json id_;
  std::string method_;
  std::shared_ptr<SendFn> send_;
  bool replied_ = true;  // moved-from and default states owe nothing
};

// Routes incoming messages to handlers and matches responses to the
// server's own outgoing requests.
// Thread-safety: not thread-safe; all calls on the connection's executor.
class Dispatcher {
 public:
  using RequestHandler = std::function<void(const json& params, ReplyOnce reply)>;
  using NotificationHandler = std::function<void(const json& params)>;
  using ResponseHandler = std::function<void(RpcResult result)>;
  // Runs before every request; an error returned here is the reply (used for
  // ServerNotInitialized and for refusing requests after shutdown).
  using RequestGate = std::function<std::optional<RpcError>(std::string_view method)>;
  using NotificationGate = std::function<bool(std::string_view method)>;

  explicit Dispatcher(SendFn send);

  void on_request(std::string method, RequestHandler handler);
  void on_notification(std::string method, NotificationHandler handler);
  void set_request_gate(RequestGate gate) { request_gate_ = std::move(gate); }
  void set_notification_gate(NotificationGate gate) { notification_gate_ = std::move(gate); }

  // Parses and dispatches one message body. Never throws.
  void dispatch(std::string_view body);
  // Parsing already done (used by dispatch; exposed for tests).
  void dispatch_json(const json& message);

  void notify(std::string_view method, const json& params);
  // Sends a server-to-client request; `on_response` runs when the answer arrives.
  void call(std::string_view method, const json& params, ResponseHandler on_response);
  // Sends an error response with a null id (framing and parse errors).
  void send_error(ErrorCode code, std::string message, const json& id = nullptr);

  size_t pending_calls() const { return calls_.size(); }

 private:
  void handle_request(const json& id, const std::string& method, const json& params);
  void handle_response(const json& message);

  std::shared_ptr<SendFn> send_;
  std::unordered_map<std::string, RequestHandler> requests_;
  std::unordered_map<std::string, NotificationHandler> notifications_;
  std::unordered_map<int64_t, ResponseHandler> calls_;
  RequestGate request_gate_;
  NotificationGate notification_gate_;
  int64_t next_call_id_ = 1;
};

}  // namespace ghostd::server
