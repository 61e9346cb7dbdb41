// One LSP session: lifecycle, document sync, completions, cancellation,
// progress while the model loads. The only class that joins LSP to the
// completion core; the entry points below run sessions over stdio or sockets.
#pragma once

#include <asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

#include "runtime/engine/engine_api.h"
#include "server/auth.h"
#include "server/completion.h"
#include "server/documents.h"
#include "server/jsonrpc.h"
#include "server/mailbox.h"
#include "server/metrics.h"
#include "server/model_state.h"
#include "server/options.h"
#include "server/protocol.h"
#include "server/rate_limit.h"
#include "server/transport.h"

namespace ghostd::server {

// Where a session comes from and what it may do (docs/deployment.md).
struct SessionContext {
  uint64_t id = 0;      // the daemon's session number: fair scheduling, metrics
  bool remote = false;  // a socket session: models by name only, first-message and idle timeouts
  std::string peer;     // the remote address, for logs and the throttle
  const TokenTable* tokens = nullptr;  // set: the first message must be initialize with a valid token
  AuthThrottle* throttle = nullptr;    // set with tokens
  PromptPool* prompts = nullptr;       // set: prompts are built there, off the event loop
};

// Thread-safety: not thread-safe; lives on its transport's executor.
class LspServer {
 public:
  // `metrics` may be null. Everything passed in must outlive the server.
  LspServer(Transport& transport, ghostd::runtime::EngineInterface& engine, ModelState& model,
            ServerOptions options, MetricsLog* metrics, SessionContext context = {});
  ~LspServer();
  LspServer(const LspServer&) = delete;
  LspServer& operator=(const LspServer&) = delete;

  // Starts reading. `on_exit` runs once with the exit code (0 after
  // shutdown, else 1) on `exit` or end of input.
  void start(std::function<void(int exit_code)> on_exit);
  // Ends the session from the server's side (the daemon is shutting down):
  // pending completions are answered as cancelled, queued messages are
  // written, then the transport closes; `on_exit` runs with 0.
  void stop();

  std::optional<int> exit_code() const { return exit_code_; }
  PositionEncoding encoding() const { return encoding_; }
  const DocumentStore& documents() const { return docs_; }
  size_t pending_requests() const { return pending_.size(); }
  const std::string& tenant() const { return tenant_; }

 private:
  enum class State { kUninitialized, kRunning, kShutdown, kExited };
  // A completion request between its arrival and its one reply.
  struct PendingCompletion {
    explicit PendingCompletion(ReplyOnce r) : reply(std::move(r)) {}
    ReplyOnce reply;
    CompletionCore::Ticket ticket = 0;
    std::string uri;
    bool inline_items = true;
    bool content_modified = false;  // cancelled by an edit rather than by the client
    TextPosition cursor;
    TextPosition word_start;
    std::string word;
    std::string trigger;
    std::string request_id;
    std::chrono::steady_clock::time_point arrived;
  };

  void register_handlers();
  void on_message(std::string body);
  // Ends an unauthenticated session with an error reply (`id` may be null).
  void refuse(const std::string& message, const json& id);
  void authenticate_and_initialize(const json& params, ReplyOnce reply);
  void arm_idle_timer();
  void forget_document(const std::string& uri, const std::string& reason);
  void on_frame_error(const Frame& frame);
  void on_model_update(const ModelSnapshot& s);
  void log_message(int type, const std::string& message);
  void finish_exit(int code);

  void initialize(const json& params, ReplyOnce reply);
  void initialized();
  void did_open(const json& params);
  void did_change(const json& params);
  void did_close(const json& params);
  void did_change_configuration(const json& params);
  void cancel_request(const json& params);
  void complete(const json& params, ReplyOnce reply, bool inline_items);
  void cancel_document_completions(const std::string& uri, CompletionOutcome why);
  void reply_completion(const std::string& key, CompletionOutput out);
  CompletionSettings settings() const;

  Transport& transport_;
  ModelState& model_;
  ServerOptions options_;
  MetricsLog* metrics_;
  Dispatcher dispatcher_;
  DocumentStore docs_;
  CompletionCore core_;
  PositionEncoding encoding_ = PositionEncoding::kUtf16;
  State state_ = State::kUninitialized;
  bool client_progress_ = false;
  std::optional<std::string> progress_token_;  // set once the client accepted it
  bool progress_begun_ = false;
  std::string trace_ = "off";
  std::string root_path_;
  std::unordered_map<std::string, std::unique_ptr<PendingCompletion>> pending_;  // key: dumped request id
  uint64_t model_listener_ = 0;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
  std::shared_ptr<Mailbox> mailbox_;  // model-state updates arrive through it
  std::function<void(int)> on_exit_;
  std::optional<int> exit_code_;

  SessionContext context_;
  std::string tenant_;
  bool authenticated_ = false;
  bool got_message_ = false;
  size_t document_bytes_ = 0;  // all open documents together (--max-document-bytes)
  RequestRateLimiter request_rate_;  // --max-requests-per-second
  // Documents a limit refused or dropped: completions on them name the reason.
  std::unordered_map<std::string, std::string> refused_documents_;
  std::chrono::steady_clock::time_point last_message_ = std::chrono::steady_clock::now();
  asio::steady_timer first_message_timer_;
  asio::steady_timer idle_timer_;
  asio::steady_timer auth_timer_;
  // An initialize held back by the auth throttle (declared after the
  // dispatcher: destroyed before it, so its drop-reply can still be sent).
  std::optional<ReplyOnce> held_initialize_;
  json held_params_;
};

// The exit code when the engine can run no job again (its device failed for
// good: EngineInterface::fatal_error): the sessions end, so that whoever
// started the daemon (a service manager, the editor's client) starts a new
// process, which gets a fresh device context.
inline constexpr int kExitDeviceLost = 3;

// Serves one session over fds 0/1 until exit; returns the exit code
// (kExitDeviceLost when the device failed for good).
int run_lsp_stdio(const ServerOptions& options, ghostd::runtime::EngineInterface& engine, ModelState& model);
// Serves sessions on options.listen ("HOST:PORT", loopback when HOST is
// empty, or "unix:/path") until SIGINT/SIGTERM or `stop` is called; each
// connection is its own session, all share the engine. Returns 0, 1 when
// the address cannot be used, or kExitDeviceLost. `on_listening` (optional, on
// the server's thread) gets the bound TCP port (0 for Unix sockets) and a
// thread-safe stop, which does nothing once the server has ended (it may end
// on its own: kExitDeviceLost).
int run_lsp_socket(const ServerOptions& options, ghostd::runtime::EngineInterface& engine, ModelState& model,
                   std::function<void(unsigned short port, std::function<void()> stop)> on_listening = {});

}  // namespace ghostd::server
