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
#include <asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include <charconv>
#include <csignal>
#include <cstdio>
#include <list>

#include "server/lsp_server.h"
#include "server/stream_transport.h"

namespace ghostd::server {

namespace rt = ghostd::runtime;

namespace {

// After SIGTERM/SIGINT, how long queued replies may take to reach clients
// that do not read before the loop stops anyway.
constexpr std::chrono::seconds kDrainTimeout{3};
// A failed accept (e.g. out of file descriptors) is retried after this.
constexpr std::chrono::milliseconds kAcceptRetry{100};

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
  Sessions(const ServerOptions& options, rt::EngineInterface& engine, ModelState& model, MetricsLog* metrics)
      : options_(options), engine_(engine), model_(model), metrics_(metrics) {}

  template <class Socket>
  void add(Socket socket) {
    if (stopping_) return;  // closing the socket refuses the late client
    auto ex = socket.get_executor();
    list_.push_back({});
    auto it = std::prev(list_.end());
    it->transport =
        std::make_unique<StreamTransport<Socket>>(std::move(socket), std::nullopt, options_.max_message_bytes);
    it->server = std::make_unique<LspServer>(*it->transport, engine_, model_, options_, metrics_);
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

 private:
  struct Session {
    std::unique_ptr<Transport> transport;
    std::unique_ptr<LspServer> server;  // declared last: destroyed before its transport
  };
  const ServerOptions& options_;
  rt::EngineInterface& engine_;
  ModelState& model_;
  MetricsLog* metrics_;  // may be null; owned by run_lsp_socket's frame
  std::list<Session> list_;
  bool stopping_ = false;
};

// Accepts connections on one listening socket; each becomes a session.
// Thread-safety: not thread-safe; on the io_context's thread.
template <class Acceptor>
class Listener {
 public:
  using Socket = typename Acceptor::protocol_type::socket;
  Listener(Acceptor acceptor, Sessions& sessions)
      : acceptor_(std::move(acceptor)), retry_(acceptor_.get_executor()), sessions_(sessions) {}

  void start() { accept_next(); }
  void close() {
    closed_ = true;
    asio::error_code ec;
    acceptor_.close(ec);
    retry_.cancel();
  }

 private:
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
      sessions_.add(std::move(socket));
      accept_next();
    });
  }

  Acceptor acceptor_;
  asio::steady_timer retry_;
  Sessions& sessions_;
  bool closed_ = false;
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
  int code = 1;
  {
    auto transport = make_stdio_transport(io.get_executor(), options.max_message_bytes);
    LspServer server(*transport, engine, model, options, metrics.get());
    asio::signal_set signals(io, SIGINT, SIGTERM);
    bool shutting_down = false;
    // The handlers below capture locals of this block by reference: the loop
    // ends inside the block, so none of them runs after they are gone.
    server.start([&code, &signals](int c) {
      code = c;
      asio::error_code ec;
      signals.cancel(ec);  // the loop ends once the session's last reply is out
    });
    signals.async_wait([&server, &shutting_down, &io](const asio::error_code& ec, int signo) {
      if (ec) return;
      spdlog::info("{}: ending the session", signo == SIGINT ? "SIGINT" : "SIGTERM");
      shutting_down = true;
      server.stop();  // exit code 0
      io.stop();
    });
    run_and_drain(io, shutting_down);
  }
  return code;
}

int run_lsp_socket(const ServerOptions& options, rt::EngineInterface& engine, ModelState& model,
                   std::function<void(unsigned short, std::function<void()>)> on_listening) {
  asio::io_context io;
  auto metrics = open_metrics(options);
  Sessions sessions(options, engine, model, metrics.get());
  std::optional<Listener<asio::ip::tcp::acceptor>> tcp;
  std::optional<Listener<asio::local::stream_protocol::acceptor>> unix_socket;
  asio::signal_set signals(io, SIGINT, SIGTERM);
  bool shutting_down = false;
  // Runs on the loop's thread; every object it touches lives in this frame
  // until the loop has ended.
  auto shut_down = [&] {
    if (shutting_down) return;
    shutting_down = true;
    asio::error_code ec;
    signals.cancel(ec);
    if (tcp) tcp->close();
    if (unix_socket) unix_socket->close();
    sessions.stop_all();
    io.stop();
  };
  // Thread-safe; valid until run_lsp_socket returns.
  auto stop = [&io, &shut_down] { asio::post(io, shut_down); };

  asio::error_code ec;
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
    unix_socket.emplace(std::move(acceptor), sessions);
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
    spdlog::info("listening on {}:{}", ip.to_string(), bound);
    tcp.emplace(std::move(acceptor), sessions);
    tcp->start();
  }
  signals.async_wait([&shut_down](const asio::error_code& sig_ec, int signo) {
    if (sig_ec) return;
    spdlog::info("{}: closing the listener and every session", signo == SIGINT ? "SIGINT" : "SIGTERM");
    shut_down();
  });
  if (on_listening) on_listening(bound, stop);
  run_and_drain(io, shutting_down);
  sessions.clear();  // before the metrics log they write to
  if (!addr.starts_with("unix:")) return 0;
  std::remove(addr.substr(5).c_str());
  return 0;
}

}  // namespace ghostd::server
