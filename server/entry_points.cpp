// run_lsp_stdio / run_lsp_socket: own the io_context, the metrics log and
// the sessions (declared in lsp_server.h).
//
// Ownership: each entry point's frame owns the io_context, the metrics log,
// the listeners and the sessions, and io.run() returns before any of them is
// destroyed. Asio handlers therefore capture `this` of one of those objects
// (or a shared_ptr), never a local or a parameter of a function that returns
// before the handler runs.
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/signal_set.hpp>
#include <asio/ssl/context.hpp>
#include <asio/ssl/stream.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <csignal>
#include <cstdio>
#include <list>
#include <memory>
#include <mutex>
#include <set>

#include "server/lsp_server.h"
#include "server/stream_transport.h"

namespace ghostd::server {

namespace rt = ghostd::runtime;

namespace {

// After SIGTERM/SIGINT, how long queued replies may take to reach clients
// that do not read before the loop stops anyway.
constexpr std::chrono::seconds kDrainTimeout{3};
// How often the loop asks the engine whether its device still works.
constexpr std::chrono::seconds kDeviceWatchPeriod{1};
// A failed accept (e.g. out of file descriptors) is retried after this.
constexpr std::chrono::milliseconds kAcceptRetry{100};

// The prompt builders of all sessions (--prompt-threads; none: on the loop).
// Declared after the io_context and before the sessions, so that it is
// destroyed after them and before the loop.
std::unique_ptr<PromptPool> make_prompt_pool(const ServerOptions& options) {
  if (options.prompt_threads <= 0) return nullptr;
  return std::make_unique<PromptPool>(options.prompt_threads);
}

std::unique_ptr<MetricsLog> open_metrics(const ServerOptions& options) {
  if (options.metrics_log.empty()) return nullptr;
  auto m = MetricsLog::open(options.metrics_log, std::chrono::seconds(options.metrics_summary_s));
  if (!m.ok()) {
    spdlog::error("{}", m.error().message);
    return nullptr;
  }
  return std::move(*m);
}

// The sessions of a socket server, one per connection.
// Thread-safety: not thread-safe; on the io_context's thread.
class Sessions {
 public:
  Sessions(const ServerOptions& options, rt::EngineInterface& engine, ModelState& model, MetricsLog* metrics,
           const TokenTable* tokens, PromptPool* prompts)
      : options_(options), engine_(engine), model_(model), metrics_(metrics), tokens_(tokens), prompts_(prompts) {}

  template <class Socket>
  void add(Socket socket, std::string peer) {
    if (stopping_) return;  // closing the socket refuses the late client
    auto ex = socket.get_executor();
    list_.push_back({});
    auto it = std::prev(list_.end());
    it->transport =
        std::make_unique<StreamTransport<Socket>>(std::move(socket), std::nullopt, options_.max_message_bytes);
    SessionContext context;
    context.id = next_id_++;
    context.remote = true;
    context.peer = std::move(peer);
    context.tokens = tokens_;
    context.throttle = tokens_ ? &throttle_ : nullptr;
    context.prompts = prompts_;
    spdlog::debug("session {} from {}", context.id, context.peer);
    it->server =
        std::make_unique<LspServer>(*it->transport, engine_, model_, options_, metrics_, std::move(context));
    // `this` outlives every handler (see the top of the file); `it` stays
    // valid until the erase below, which is the only one.
    it->server->start([this, it, ex](int code) {
      spdlog::info("session ended (exit code {})", code);
      // Destroy the session after the current handler (inside it) returns.
      asio::post(ex, [this, it] { list_.erase(it); });
    });
  }

  // Ends every session from the server's side: pending completions are
  // answered, queued replies written, then each connection closes.
  void stop_all() {
    stopping_ = true;
    for (auto& s : list_) s.server->stop();
  }

  void clear() { list_.clear(); }
  bool stopping() const { return stopping_; }

 private:
  struct Session {
    std::unique_ptr<Transport> transport;
    std::unique_ptr<LspServer> server;  // declared last: destroyed before its transport
  };
  const ServerOptions& options_;
  rt::EngineInterface& engine_;
  ModelState& model_;
  MetricsLog* metrics_;       // may be null; owned by run_lsp_socket's frame
  const TokenTable* tokens_;  // may be null; owned by run_lsp_socket's frame
  PromptPool* prompts_;       // may be null; owned by run_lsp_socket's frame
  AuthThrottle throttle_;
  std::list<Session> list_;
  uint64_t next_id_ = 1;
  bool stopping_ = false;
};

// Accepts connections on one listening socket; each becomes a session. With
// a TLS context (TCP only) a connection first completes its handshake within
// --handshake-timeout-ms; a peer whose first byte is not a TLS record (a
// plain LSP client) gets a plain-text error reply saying so.
// Thread-safety: not thread-safe; on the io_context's thread.
template <class Acceptor>
class Listener {
 public:
  using Socket = typename Acceptor::protocol_type::socket;
  static constexpr bool kTcp = std::is_same_v<Acceptor, asio::ip::tcp::acceptor>;
  Listener(Acceptor acceptor, Sessions& sessions, asio::ssl::context* tls, std::chrono::milliseconds handshake_timeout)
      : acceptor_(std::move(acceptor)),
        retry_(acceptor_.get_executor()),
        sessions_(sessions),
        tls_(tls),
        handshake_timeout_(handshake_timeout) {}

  void start() { accept_next(); }
  void close() {
    closed_ = true;
    asio::error_code ec;
    acceptor_.close(ec);
    retry_.cancel();
    // Their handlers run (aborted) and drop them.
    for (const auto& h : handshakes_) h->stream.lowest_layer().close(ec);
  }

 private:
  struct Handshake {
    Handshake(Socket s, asio::ssl::context& ctx) : stream(std::move(s), ctx), timer(stream.get_executor()) {}
    asio::ssl::stream<Socket> stream;
    asio::steady_timer timer;
    std::string peer;
    std::array<char, 1> first{};
  };

  static std::string peer_of(const Socket& socket) {
    if constexpr (kTcp) {
      asio::error_code ec;
      auto ep = socket.remote_endpoint(ec);
      return ec ? std::string("unknown") : ep.address().to_string();
    } else {
      return "unix";
    }
  }

  void accept_next() {
    acceptor_.async_accept([this](const asio::error_code& ec, Socket socket) {
      if (closed_ || ec == asio::error::operation_aborted) return;
      if (ec) {
        // Retrying at once would spin while the error lasts (EMFILE).
        spdlog::warn("accept failed: {}; retrying", ec.message());
        retry_.expires_after(kAcceptRetry);
        retry_.async_wait([this](const asio::error_code& wait_ec) {
          if (!wait_ec && !closed_) accept_next();
        });
        return;
      }
      std::string peer = peer_of(socket);
      if (tls_ && !sessions_.stopping()) {
        handshake(std::move(socket), std::move(peer));
      } else {
        sessions_.add(std::move(socket), std::move(peer));
      }
      accept_next();
    });
  }

  void handshake(Socket socket, std::string peer) {
    auto h = std::make_shared<Handshake>(std::move(socket), *tls_);
    h->peer = std::move(peer);
    handshakes_.insert(h);
    h->timer.expires_after(handshake_timeout_);
    h->timer.async_wait([h, ms = handshake_timeout_.count()](const asio::error_code& ec) {
      if (ec) return;
      spdlog::warn("TLS handshake from {}: not done within {} ms (--handshake-timeout-ms); closing", h->peer, ms);
      asio::error_code close_ec;
      h->stream.lowest_layer().close(close_ec);  // the pending operation ends with an error
    });
    // Peek at the first byte: a TLS handshake starts with record type 22.
    h->stream.next_layer().async_receive(
        asio::buffer(h->first), asio::socket_base::message_peek, [this, h](const asio::error_code& ec, size_t n) {
          if (ec || n == 0 || closed_) {
            finish(h);
            return;
          }
          if (h->first[0] != 0x16) {
            spdlog::warn("connection from {}: not TLS (plain LSP on a TLS port?); closing", h->peer);
            static const std::string kBody =
                R"({"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"this port speaks TLS: connect with TLS (tls://HOST:PORT), not plain TCP"}})";
            auto reply = std::make_shared<std::string>(encode_frame(kBody));
            asio::async_write(h->stream.next_layer(), asio::buffer(*reply), [this, h, reply](const asio::error_code&, size_t) {
              asio::error_code sec;
              h->stream.next_layer().shutdown(asio::socket_base::shutdown_send, sec);
              finish(h);
            });
            return;
          }
          h->stream.async_handshake(asio::ssl::stream_base::server, [this, h](const asio::error_code& hs_ec) {
            if (hs_ec) {
              spdlog::warn("TLS handshake from {} failed: {}", h->peer, hs_ec.message());
              finish(h);
              return;
            }
            h->timer.cancel();
            handshakes_.erase(h);
            if (closed_) return;
            sessions_.add(std::move(h->stream), h->peer);
          });
        });
  }

  // Ends a connection that never became a session.
  void finish(const std::shared_ptr<Handshake>& h) {
    h->timer.cancel();
    asio::error_code ec;
    h->stream.lowest_layer().close(ec);
    handshakes_.erase(h);
  }

  Acceptor acceptor_;
  asio::steady_timer retry_;
  Sessions& sessions_;
  asio::ssl::context* tls_;  // null: plain; owned by run_lsp_socket's frame
  std::chrono::milliseconds handshake_timeout_;
  std::set<std::shared_ptr<Handshake>> handshakes_;  // in progress
  bool closed_ = false;
};

// Looks every kDeviceWatchPeriod at whether the engine can still run jobs;
// the first time it cannot, logs why and calls `on_lost` (once). Until then
// a failed device fails each job with its reason, which the editors show.
// Thread-safety: the loop's thread only.
class DeviceWatch {
 public:
  DeviceWatch(asio::io_context& io, const rt::EngineInterface& engine, std::function<void()> on_lost)
      : timer_(io), engine_(engine), on_lost_(std::move(on_lost)) {}
  void start() { arm(); }
  // Lets the loop end (the timer is its last work once the sessions are gone).
  void stop() {
    stopped_ = true;
    timer_.cancel();
  }
  bool lost() const { return lost_; }

 private:
  void arm() {
    timer_.expires_after(kDeviceWatchPeriod);
    timer_.async_wait([this](const asio::error_code& ec) {
      if (ec || stopped_) return;
      if (std::string why = engine_.fatal_error(); !why.empty()) {
        lost_ = true;
        stopped_ = true;
        spdlog::critical("{}. ghostd cannot continue: ending every session (exit code {}) so that a new process "
                         "can start",
                         why, kExitDeviceLost);
        on_lost_();
        return;
      }
      arm();
    });
  }
  asio::steady_timer timer_;
  const rt::EngineInterface& engine_;
  std::function<void()> on_lost_;
  bool stopped_ = false;
  bool lost_ = false;
};

// Runs the loop until it runs out of work, or until a shutdown (SIGTERM,
// SIGINT, stop()) stops it; then gives what the shutdown started (replies to
// pending requests, closing connections) up to kDrainTimeout to finish.
void run_and_drain(asio::io_context& io, const bool& shutting_down) {
  io.run();
  if (!shutting_down) return;
  io.restart();
  io.run_for(kDrainTimeout);
  // A loop that ran out of work is stopped; one that timed out is not.
  if (!io.stopped()) spdlog::warn("shutdown: replies still unsent after {} s; closing anyway", kDrainTimeout.count());
}

}  // namespace

int run_lsp_stdio(const ServerOptions& options, rt::EngineInterface& engine, ModelState& model) {
  asio::io_context io;
  auto metrics = open_metrics(options);
  auto prompts = make_prompt_pool(options);
  int code = 1;
  {
    auto transport = make_stdio_transport(io.get_executor(), options.max_message_bytes);
    LspServer server(*transport, engine, model, options, metrics.get(),
                     SessionContext{.id = 1, .prompts = prompts.get()});
    asio::signal_set signals(io, SIGINT, SIGTERM);
    bool shutting_down = false;
    DeviceWatch watch(io, engine, [&server, &shutting_down, &io] {
      shutting_down = true;
      server.stop();
      io.stop();
    });
    // The handlers below capture locals of this block by reference: the loop
    // ends inside the block, so none of them runs after they are gone.
    server.start([&code, &signals, &watch](int c) {
      code = c;
      asio::error_code ec;
      signals.cancel(ec);  // the loop ends once the session's last reply is out
      watch.stop();
    });
    watch.start();
    signals.async_wait([&server, &shutting_down, &io](const asio::error_code& ec, int signo) {
      if (ec) return;
      spdlog::info("{}: ending the session", signo == SIGINT ? "SIGINT" : "SIGTERM");
      shutting_down = true;
      server.stop();  // exit code 0
      io.stop();
    });
    run_and_drain(io, shutting_down);
    if (watch.lost()) code = kExitDeviceLost;
  }
  return code;
}

int run_lsp_socket(const ServerOptions& options, rt::EngineInterface& engine, ModelState& model,
                   std::function<void(unsigned short, std::function<void()>)> on_listening) {
  asio::io_context io;
  asio::error_code ec;
  std::optional<TokenTable> tokens;
  if (!options.token_file.empty()) {
    auto t = TokenTable::load(options.token_file);
    if (!t.ok()) {
      spdlog::error("{}", t.error().message);
      return 1;
    }
    tokens.emplace(std::move(*t));
    spdlog::info("--token-file {}: {} tokens; sessions must authenticate", options.token_file, tokens->size());
  }
  std::optional<asio::ssl::context> tls;
  if (options.tls()) {
    tls.emplace(asio::ssl::context::tls_server);
    // TLS 1.2 and 1.3 only.
    SSL_CTX_set_min_proto_version(tls->native_handle(), TLS1_2_VERSION);
    tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                         asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                         asio::ssl::context::no_tlsv1_1,
                     ec);
    if (!ec) tls->use_certificate_chain_file(options.tls_cert, ec);
    if (ec) {
      spdlog::error("--tls-cert {}: {}", options.tls_cert, ec.message());
      return 1;
    }
    tls->use_private_key_file(options.tls_key, asio::ssl::context::pem, ec);
    if (ec) {
      spdlog::error("--tls-key {}: {}", options.tls_key, ec.message());
      return 1;
    }
    if (SSL_CTX_check_private_key(tls->native_handle()) != 1) {
      spdlog::error("--tls-key {} does not match the certificate in --tls-cert {}", options.tls_key, options.tls_cert);
      return 1;
    }
  }
  const std::chrono::milliseconds handshake_timeout(options.handshake_timeout_ms);
  auto metrics = open_metrics(options);
  auto prompts = make_prompt_pool(options);
  Sessions sessions(options, engine, model, metrics.get(), tokens ? &*tokens : nullptr, prompts.get());
  std::optional<Listener<asio::ip::tcp::acceptor>> tcp;
  std::optional<Listener<asio::local::stream_protocol::acceptor>> unix_socket;
  asio::signal_set signals(io, SIGINT, SIGTERM);
  bool shutting_down = false;
  std::function<void()> on_device_lost;  // set below: shut_down
  DeviceWatch watch(io, engine, [&on_device_lost] { on_device_lost(); });
  // Runs on the loop's thread; every object it touches lives in this frame
  // until the loop has ended.
  auto shut_down = [&] {
    if (shutting_down) return;
    shutting_down = true;
    asio::error_code ec;
    signals.cancel(ec);
    watch.stop();
    if (tcp) tcp->close();
    if (unix_socket) unix_socket->close();
    sessions.stop_all();
    io.stop();
  };
  // Thread-safe, and a no-op once the loop has ended: the daemon can end on
  // its own (a lost device) while another thread is about to stop it.
  struct StopHandle {
    std::mutex mu;
    std::function<void()> post;  // empty once the loop has ended
  };
  auto stop_handle = std::make_shared<StopHandle>();
  stop_handle->post = [&io, &shut_down] { asio::post(io, shut_down); };
  auto stop = [stop_handle] {
    std::lock_guard lock(stop_handle->mu);
    if (stop_handle->post) stop_handle->post();
  };

  const std::string& addr = options.listen;
  unsigned short bound = 0;
  if (addr.starts_with("unix:")) {
    std::string path = addr.substr(5);
    std::remove(path.c_str());
    asio::local::stream_protocol::acceptor acceptor(io);
    asio::local::stream_protocol::endpoint ep(path);
    acceptor.open(ep.protocol(), ec);
    if (!ec) acceptor.bind(ep, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      spdlog::error("--listen {}: {}", addr, ec.message());
      return 1;
    }
    spdlog::info("listening on {}", addr);
    unix_socket.emplace(std::move(acceptor), sessions, nullptr, handshake_timeout);
    unix_socket->start();
  } else {
    size_t colon = addr.rfind(':');
    unsigned short port = 0;
    std::string host = colon == std::string::npos ? "" : addr.substr(0, colon);
    std::string port_text = colon == std::string::npos ? addr : addr.substr(colon + 1);
    auto [p, perr] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (perr != std::errc() || p != port_text.data() + port_text.size()) {
      spdlog::error("--listen {}: expected HOST:PORT or unix:/path", addr);
      return 1;
    }
    auto ip = asio::ip::make_address(host.empty() ? "127.0.0.1" : host, ec);
    if (ec) {
      spdlog::error("--listen {}: bad address: {}", addr, ec.message());
      return 1;
    }
    if (!ip.is_loopback() && !(tls && tokens)) {
      if (!options.insecure) {
        spdlog::error("--listen {}: refusing a non-loopback address without TLS and tokens: anyone who can reach it "
                      "could read the code editors send and use the daemon. Pass --tls-cert, --tls-key and "
                      "--token-file, or --insecure on a network you trust",
                      addr);
        return 1;
      }
      spdlog::warn("--listen {} --insecure: serving {} without {}", addr, ip.to_string(),
                   tls ? "tokens" : tokens ? "TLS" : "TLS or tokens");
    }
    asio::ip::tcp::acceptor acceptor(io);
    asio::ip::tcp::endpoint ep(ip, port);
    acceptor.open(ep.protocol(), ec);
    if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor.bind(ep, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      spdlog::error("--listen {}: {}", addr, ec.message());
      return 1;
    }
    bound = acceptor.local_endpoint().port();
    spdlog::info("listening on {}:{}{}", ip.to_string(), bound, tls ? " (TLS)" : "");
    tcp.emplace(std::move(acceptor), sessions, tls ? &*tls : nullptr, handshake_timeout);
    tcp->start();
  }
  signals.async_wait([&shut_down](const asio::error_code& sig_ec, int signo) {
    if (sig_ec) return;
    spdlog::info("{}: closing the listener and every session", signo == SIGINT ? "SIGINT" : "SIGTERM");
    shut_down();
  });
  on_device_lost = shut_down;
  watch.start();
  if (on_listening) on_listening(bound, stop);
  run_and_drain(io, shutting_down);
  {
    std::lock_guard lock(stop_handle->mu);
    stop_handle->post = nullptr;  // before io and shut_down go
  }
  sessions.clear();  // before the metrics log they write to
  const int code = watch.lost() ? kExitDeviceLost : 0;
  if (addr.starts_with("unix:")) std::remove(addr.substr(5).c_str());
  return code;
}

}  // namespace ghostd::server
