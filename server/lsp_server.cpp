// The LSP session: lifecycle (initialize, shutdown, exit, idle and
// unauthenticated timeouts), authentication, documents and the model's
// progress. lsp_completion.cpp has the completion requests.
#include "server/lsp_server.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

#include "server/version.h"

namespace ghostd::server {

namespace rt = ghostd::runtime;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kProgressToken = "ghostd/model-load";

}  // namespace

LspServer::LspServer(Transport& transport, rt::EngineInterface& engine, ModelState& model, ServerOptions options,
                     MetricsLog* metrics, SessionContext context)
    : transport_(transport),
      model_(model),
      options_(std::move(options)),
      metrics_(metrics),
      dispatcher_([this](std::string body) { transport_.send(std::move(body)); }),
      core_(transport.executor(), engine, context.prompts),
      context_(std::move(context)),
      request_rate_(options_.max_requests_per_second),
      first_message_timer_(transport.executor()),
      idle_timer_(transport.executor()),
      auth_timer_(transport.executor()) {
  authenticated_ = context_.tokens == nullptr;
  register_handlers();
}

LspServer::~LspServer() {
  if (model_listener_) model_.unsubscribe(model_listener_);
  if (mailbox_) mailbox_->close();
  // Unanswered completions get their reply (to a transport that may be closed).
  std::vector<CompletionCore::Ticket> tickets;
  for (auto& [_, p] : pending_) tickets.push_back(p->ticket);
  for (auto t : tickets) core_.cancel(t, CompletionOutcome::kCancelled);
}

void LspServer::start(std::function<void(int)> on_exit) {
  on_exit_ = std::move(on_exit);
  mailbox_ = std::make_shared<Mailbox>(transport_.executor());
  std::weak_ptr<int> alive = alive_;
  auto mailbox = mailbox_;
  model_listener_ = model_.subscribe([this, alive, mailbox](const ModelSnapshot& s) {
    mailbox->post([this, alive, s] {
      if (alive.lock()) on_model_update(s);
    });
  });
  if (context_.remote) {
    // Slowloris: a connection that has not sent a whole first message in
    // time is closed, however slowly its bytes trickle in.
    first_message_timer_.expires_after(std::chrono::milliseconds(options_.handshake_timeout_ms));
    first_message_timer_.async_wait([this, alive](const asio::error_code& ec) {
      if (ec || !alive.lock() || got_message_ || state_ == State::kExited) return;
      spdlog::warn("session {} from {}: no message within {} ms; closing", context_.id, context_.peer,
                   options_.handshake_timeout_ms);
      refuse("no initialize within " + std::to_string(options_.handshake_timeout_ms) +
                 " ms (--handshake-timeout-ms); closing",
             nullptr);
    });
    arm_idle_timer();
  }
  transport_.start({
      [this](std::string body) { on_message(std::move(body)); },
      [this](const Frame& f) { on_frame_error(f); },
      [this] {
        if (state_ != State::kExited) finish_exit(state_ == State::kShutdown ? 0 : 1);
      },
      // --max-requests-per-second: while the session's bucket is empty its
      // transport stops handing over messages and reading (the peer's sends
      // back up in its socket), so a flood costs the event loop no parse per
      // request; the refusal in complete() stays for transports that cannot pause.
      [this] { return request_rate_.wait(); },
  });
}

void LspServer::on_message(std::string body) {
  got_message_ = true;
  last_message_ = Clock::now();
  if (!authenticated_ && state_ != State::kExited) {
    // Before a valid token only one initialize may come; anything else ends
    // the connection, so an unauthenticated peer reaches no other handler.
    json msg = json::parse(body, nullptr, false);
    const bool is_initialize = msg.is_object() && msg.contains("id") && msg.value("method", "") == "initialize";
    if (!is_initialize || held_initialize_) {
      json id = msg.is_object() && msg.contains("id") && (msg["id"].is_string() || msg["id"].is_number_integer())
                    ? msg["id"]
                    : json(nullptr);
      spdlog::warn("session {} from {}: a message before authentication; closing", context_.id, context_.peer);
      refuse("authentication required: the first message must be 'initialize' with initializationOptions.token",
             id);
      return;
    }
  }
  dispatcher_.dispatch(body);
}

void LspServer::refuse(const std::string& message, const json& id) {
  if (state_ == State::kExited) return;
  dispatcher_.send_error(ErrorCode::kUnauthorized, message, id);
  finish_exit(1);
}

void LspServer::arm_idle_timer() {
  if (options_.idle_timeout_s <= 0) return;
  const auto limit = std::chrono::seconds(options_.idle_timeout_s);
  idle_timer_.expires_at(last_message_ + limit);
  std::weak_ptr<int> alive = alive_;
  idle_timer_.async_wait([this, alive, limit](const asio::error_code& ec) {
    if (ec || !alive.lock() || state_ == State::kExited) return;
    if (Clock::now() - last_message_ < limit) {
      arm_idle_timer();  // a message came since: wait for the rest
      return;
    }
    if (!pending_.empty()) {
      // Waiting for its own answers is not idle.
      last_message_ = Clock::now();
      arm_idle_timer();
      return;
    }
    spdlog::info("session {} from {}: idle for {} s; closing", context_.id, context_.peer, options_.idle_timeout_s);
    log_message(1, "ghostd: closing the session: no message for " + std::to_string(options_.idle_timeout_s) +
                       " s (--idle-timeout-s)");
    finish_exit(1);
  });
}

void LspServer::stop() {
  if (state_ == State::kExited) return;
  if (state_ == State::kRunning) log_message(3, "ghostd is shutting down");
  finish_exit(0);
}

void LspServer::register_handlers() {
  dispatcher_.set_request_gate([this](std::string_view method) -> std::optional<RpcError> {
    switch (state_) {
      case State::kUninitialized:
        if (method != "initialize") {
          return RpcError{ErrorCode::kServerNotInitialized, "server not initialized: send 'initialize' first"};
        }
        return std::nullopt;
      case State::kRunning:
        if (method == "initialize") return RpcError{ErrorCode::kInvalidRequest, "server is already initialized"};
        return std::nullopt;
      case State::kShutdown:
      case State::kExited:
        return RpcError{ErrorCode::kInvalidRequest, "server is shutting down"};
    }
    return std::nullopt;
  });
  // Before initialize and after shutdown, notifications other than exit are dropped.
  dispatcher_.set_notification_gate(
      [this](std::string_view method) { return state_ == State::kRunning || method == "exit"; });

  dispatcher_.on_request("initialize", [this](const json& p, ReplyOnce r) { initialize(p, std::move(r)); });
  dispatcher_.on_request("shutdown", [this](const json&, ReplyOnce r) {
    std::vector<std::string> keys;
    for (auto& [k, _] : pending_) keys.push_back(k);
    for (auto& k : keys) core_.cancel(pending_[k]->ticket, CompletionOutcome::kCancelled);
    state_ = State::kShutdown;
    r(json(nullptr));
  });
  dispatcher_.on_request("textDocument/inlineCompletion",
                         [this](const json& p, ReplyOnce r) { complete(p, std::move(r), true); });
  dispatcher_.on_request("textDocument/completion",
                         [this](const json& p, ReplyOnce r) { complete(p, std::move(r), false); });
  dispatcher_.on_notification("initialized", [this](const json&) { initialized(); });
  dispatcher_.on_notification("exit", [this](const json&) { finish_exit(state_ == State::kShutdown ? 0 : 1); });
  dispatcher_.on_notification("textDocument/didOpen", [this](const json& p) { did_open(p); });
  dispatcher_.on_notification("textDocument/didChange", [this](const json& p) { did_change(p); });
  dispatcher_.on_notification("textDocument/didClose", [this](const json& p) { did_close(p); });
  dispatcher_.on_notification("textDocument/didSave", [this](const json& p) {
    if (auto s = parse_did_save(p); !s.ok()) log_message(2, "didSave: " + s.error().message);
  });
  dispatcher_.on_notification("workspace/didChangeConfiguration",
                              [this](const json& p) { did_change_configuration(p); });
  dispatcher_.on_notification("$/cancelRequest", [this](const json& p) { cancel_request(p); });
  dispatcher_.on_notification("$/setTrace", [this](const json& p) {
    if (p.is_object() && p.contains("value") && p["value"].is_string()) {
      std::string v = p["value"];
      if (v == "off" || v == "messages" || v == "verbose") trace_ = v;
    }
  });
}

void LspServer::on_frame_error(const Frame& frame) {
  if (!authenticated_) {
    spdlog::warn("session {} from {}: malformed data before authentication; closing", context_.id, context_.peer);
    refuse("authentication required; malformed message: " + frame.error, nullptr);
    return;
  }
  if (frame.kind == Frame::Kind::kTooLarge) {
    dispatcher_.send_error(ErrorCode::kInvalidRequest, frame.error);
  } else {
    dispatcher_.send_error(ErrorCode::kParseError, "malformed message header: " + frame.error);
  }
}

void LspServer::log_message(int type, const std::string& message) {
  if (type <= 2) spdlog::warn("{}", message);
  if (state_ == State::kExited) return;
  dispatcher_.notify("window/logMessage", {{"type", type}, {"message", message}});
}

void LspServer::finish_exit(int code) {
  if (state_ == State::kExited) return;
  std::vector<std::string> keys;
  for (auto& [k, _] : pending_) keys.push_back(k);
  for (auto& k : keys) {
    if (auto it = pending_.find(k); it != pending_.end()) core_.cancel(it->second->ticket, CompletionOutcome::kCancelled);
  }
  if (held_initialize_) {
    (*held_initialize_)(RpcError{ErrorCode::kInvalidRequest, "session closed"});
    held_initialize_.reset();
  }
  state_ = State::kExited;
  exit_code_ = code;
  first_message_timer_.cancel();
  idle_timer_.cancel();
  auth_timer_.cancel();
  transport_.close();
  if (on_exit_) on_exit_(code);
}

void LspServer::initialize(const json& params, ReplyOnce reply) {
  if (authenticated_) {
    authenticate_and_initialize(params, std::move(reply));
    return;
  }
  // Repeated failures from this address: the attempt waits (the throttle
  // grows the wait with each failure) before the token is even checked.
  const auto wait = context_.throttle ? context_.throttle->delay(context_.peer, Clock::now())
                                      : std::chrono::milliseconds(0);
  if (wait.count() == 0) {
    authenticate_and_initialize(params, std::move(reply));
    return;
  }
  held_initialize_.emplace(std::move(reply));
  held_params_ = params;
  auth_timer_.expires_after(wait);
  std::weak_ptr<int> alive = alive_;
  auth_timer_.async_wait([this, alive](const asio::error_code& ec) {
    if (ec || !alive.lock() || !held_initialize_ || state_ == State::kExited) return;
    ReplyOnce r = std::move(*held_initialize_);
    held_initialize_.reset();
    authenticate_and_initialize(std::exchange(held_params_, json()), std::move(r));
  });
}

void LspServer::authenticate_and_initialize(const json& params, ReplyOnce reply) {
  if (!authenticated_) {
    std::string token;
    if (params.is_object() && params.contains("initializationOptions")) {
      const json& io = params["initializationOptions"];
      if (io.is_object() && io.contains("token") && io["token"].is_string()) token = io["token"];
    }
    std::optional<std::string> tenant = token.empty() ? std::nullopt : context_.tokens->tenant_for(token);
    if (!tenant) {
      if (context_.throttle) context_.throttle->record_failure(context_.peer, Clock::now());
      spdlog::warn("session {} from {}: authentication failed ({})", context_.id, context_.peer,
                   token.empty() ? "no token" : "unknown token");
      reply(RpcError{ErrorCode::kUnauthorized, token.empty()
                                                   ? "authentication required: initializationOptions.token is missing"
                                                   : "authentication failed: unknown token"});
      finish_exit(1);
      return;
    }
    if (context_.throttle) context_.throttle->record_success(context_.peer);
    authenticated_ = true;
    tenant_ = *tenant;
    spdlog::info("session {} from {}: tenant {}", context_.id, context_.peer, tenant_);
  }
  auto p = parse_initialize(params);
  if (!p.ok()) {
    reply(RpcError{ErrorCode::kInvalidParams, p.error().message});
    return;
  }
  // utf-8 is native to the store; utf-32 is next cheapest; utf-16 is the default.
  const auto& offered = p->position_encodings;
  if (std::find(offered.begin(), offered.end(), "utf-8") != offered.end()) {
    encoding_ = PositionEncoding::kUtf8;
  } else if (std::find(offered.begin(), offered.end(), "utf-32") != offered.end()) {
    encoding_ = PositionEncoding::kUtf32;
  }
  client_progress_ = p->work_done_progress;
  trace_ = p->trace;
  if (params.contains("rootUri") && params["rootUri"].is_string()) root_path_ = params["rootUri"];
  std::optional<std::string> option_error;
  ServerOptions applied = options_;
  if (auto s = apply_initialization_options(applied, p->initialization_options); !s.ok()) {
    option_error = s.message();
  } else if (applied.model != options_.model) {
    // The client named a model: a --model NAME, or (stdio only: the editor's
    // own process) a path. A socket client never makes the daemon open a path.
    if (const std::string* path = find_named_model(options_, applied.model)) {
      applied.model = *path;
    } else if (context_.remote) {
      std::string names;
      for (const auto& [n, _] : options_.named_models) names += (names.empty() ? "" : ", ") + n;
      spdlog::warn("session {} from {}: refused model '{}'", context_.id, context_.peer, applied.model);
      reply(RpcError{ErrorCode::kInvalidParams,
                     "initializationOptions.model: unknown model '" + applied.model + "'; " +
                         (names.empty() ? std::string("this server offers no model choice (omit the option)")
                                        : "this server offers: " + names) +
                         " (remote sessions select models by name)"});
      return;
    }
  }
  if (!option_error) options_ = applied;
  state_ = State::kRunning;
  json caps = {
      {"positionEncoding", position_encoding_name(encoding_)},
      {"textDocumentSync", {{"openClose", true}, {"change", 2}, {"save", {{"includeText", false}}}}},
      {"inlineCompletionProvider", json::object()},
      {"completionProvider", {{"resolveProvider", false}, {"triggerCharacters", {".", "(", " "}}}},
  };
  reply(json{{"capabilities", caps}, {"serverInfo", {{"name", "ghostd"}, {"version", version()}}}});
  if (option_error) log_message(2, "ignoring initializationOptions: " + *option_error);
  // A draft path is a local path like model: only stdio sessions name one.
  const std::string draft = context_.remote ? std::string() : options_.draft_model;
  if (auto warning = model_.request_model(options_.model, draft)) log_message(2, *warning);
}

void LspServer::initialized() {
  ModelSnapshot s = model_.snapshot();
  if (s.phase == ModelSnapshot::Phase::kFailed) {
    log_message(1, "model failed to load: " + s.message);
    return;
  }
  if (s.phase == ModelSnapshot::Phase::kReady && s.info && !s.info->warning.empty()) {
    log_message(2, s.info->warning);
  }
  if (s.phase != ModelSnapshot::Phase::kLoading || !client_progress_) return;
  std::weak_ptr<int> alive = alive_;
  dispatcher_.call("window/workDoneProgress/create", {{"token", kProgressToken}}, [this, alive](RpcResult r) {
    if (!alive.lock() || !r.ok() || state_ != State::kRunning) return;
    progress_token_ = kProgressToken;
    on_model_update(model_.snapshot());
  });
}

void LspServer::on_model_update(const ModelSnapshot& s) {
  if (state_ != State::kRunning) return;
  if (s.phase == ModelSnapshot::Phase::kFailed) log_message(1, "model failed to load: " + s.message);
  if (s.phase == ModelSnapshot::Phase::kReady && s.info && !s.info->warning.empty()) {
    log_message(2, s.info->warning);
  }
  if (!progress_token_) return;
  json value;
  if (s.phase == ModelSnapshot::Phase::kLoading) {
    value = {{"kind", progress_begun_ ? "report" : "begin"}, {"percentage", std::clamp(s.percent, 0, 100)},
             {"message", s.message}};
    if (!progress_begun_) value["title"] = "ghostd: loading model";
    progress_begun_ = true;
  } else {
    if (!progress_begun_) {
      dispatcher_.notify("$/progress", {{"token", *progress_token_},
                                        {"value", {{"kind", "begin"}, {"title", "ghostd: loading model"}}}});
    }
    value = {{"kind", "end"}, {"message", s.phase == ModelSnapshot::Phase::kReady ? "model ready" : s.message}};
  }
  dispatcher_.notify("$/progress", {{"token", *progress_token_}, {"value", value}});
  if (s.phase != ModelSnapshot::Phase::kLoading) progress_token_.reset();
}

void LspServer::did_open(const json& params) {
  auto p = parse_did_open(params);
  if (!p.ok()) {
    log_message(2, "didOpen: " + p.error().message);
    return;
  }
  auto& td = p->text_document;
  cancel_document_completions(td.uri, CompletionOutcome::kCancelled);
  const Document* existing = docs_.find(td.uri);
  const size_t replaced = existing ? existing->text().size() : 0;
  std::string refused;
  if (!existing && docs_.size() >= static_cast<size_t>(options_.max_documents)) {
    refused = "the session has " + std::to_string(docs_.size()) + " open documents, the limit (--max-open-documents)";
  } else if (document_bytes_ - replaced + td.text.size() > options_.max_document_bytes) {
    refused = "the session's open documents would hold " + std::to_string(document_bytes_ - replaced + td.text.size()) +
              " bytes, over the limit of " + std::to_string(options_.max_document_bytes) + " (--max-document-bytes)";
  }
  if (!refused.empty()) {
    if (existing) forget_document(td.uri, refused);
    log_message(1, "didOpen " + td.uri + " refused: " + refused);
    if (refused_documents_.size() < static_cast<size_t>(options_.max_documents)) refused_documents_[td.uri] = refused;
    return;
  }
  refused_documents_.erase(td.uri);
  docs_.open(td.uri, td.language_id, td.version, td.text);
  document_bytes_ = document_bytes_ - replaced + td.text.size();
}

void LspServer::forget_document(const std::string& uri, const std::string& reason) {
  if (const Document* d = docs_.find(uri)) {
    document_bytes_ -= d->text().size();
    docs_.close(uri);
  }
  if (refused_documents_.size() < static_cast<size_t>(options_.max_documents)) refused_documents_[uri] = reason;
}

void LspServer::did_change(const json& params) {
  auto p = parse_did_change(params);
  if (!p.ok()) {
    log_message(2, "didChange: " + p.error().message);
    return;
  }
  cancel_document_completions(p->uri, CompletionOutcome::kCancelled);
  const Document* before = docs_.find(p->uri);
  const size_t old_size = before ? before->text().size() : 0;
  if (auto s = docs_.change(p->uri, p->version, p->changes, encoding_); !s.ok()) {
    log_message(2, "didChange: " + s.message());
  }
  if (const Document* after = docs_.find(p->uri)) {
    document_bytes_ = document_bytes_ - old_size + after->text().size();
    if (document_bytes_ > options_.max_document_bytes) {
      const std::string reason = "an edit brought the session's open documents to " + std::to_string(document_bytes_) +
                                 " bytes, over the limit of " + std::to_string(options_.max_document_bytes) +
                                 " (--max-document-bytes); the document was dropped";
      log_message(1, "didChange " + p->uri + ": " + reason);
      forget_document(p->uri, reason);
    }
  }
}

void LspServer::did_close(const json& params) {
  auto p = parse_did_close(params);
  if (!p.ok()) {
    log_message(2, "didClose: " + p.error().message);
    return;
  }
  cancel_document_completions(p->uri, CompletionOutcome::kCancelled);
  if (refused_documents_.erase(p->uri)) return;
  const Document* d = docs_.find(p->uri);
  if (d) document_bytes_ -= d->text().size();
  if (!docs_.close(p->uri)) log_message(2, "didClose for a document that is not open: " + p->uri);
}

void LspServer::did_change_configuration(const json& params) {
  if (!params.is_object() || !params.contains("settings")) return;
  const json& settings = params["settings"];
  const json& ours = settings.is_object() && settings.contains("ghostd") ? settings["ghostd"] : settings;
  if (auto s = apply_initialization_options(options_, ours); !s.ok()) {
    log_message(2, "ignoring configuration: " + s.message());
  }
}

}  // namespace ghostd::server
