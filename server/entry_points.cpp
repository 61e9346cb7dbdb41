// run_lsp_stdio / run_lsp_socket: own the io_context, the metrics log and
// the sessions (declared in lsp_server.h).
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/signal_set.hpp>
#include <spdlog/spdlog.h>

#include <charconv>
#include <cstdio>
#include <list>

#include "server/lsp_server.h"
#include "server/stream_transport.h"

namespace ghostd::server {

namespace rt = ghostd::runtime;

namespace {

std::unique_ptr<MetricsLog> open_metrics(const ServerOptions& options) {
  if (options.metrics_log.empty()) return nullptr;
  auto m = MetricsLog::open(options.metrics_log, std::chrono::seconds(options.metrics_summary_s));
  if (!m.ok()) {
    spdlog::error("{}", m.error().message);
    return nullptr;
  }
  return std::move(*m);
}

struct Session {
  std::unique_ptr<Transport> transport;
  std::unique_ptr<LspServer> server;
};

// Accepts connections on any Asio acceptor; each becomes its own session.
template <class Acceptor, class Socket>
void accept_loop(Acceptor& acceptor, std::list<Session>& sessions, const ServerOptions& options,
                 rt::EngineInterface& engine, ModelState& model, MetricsLog* metrics) {
  acceptor.async_accept([&](const asio::error_code& ec, Socket socket) {
    if (ec) {
      if (ec != asio::error::operation_aborted) spdlog::warn("accept failed: {}", ec.message());
      if (!acceptor.is_open()) return;
    } else {
      auto ex = socket.get_executor();
      sessions.push_back({});
      auto it = std::prev(sessions.end());
      it->transport = std::make_unique<StreamTransport<Socket>>(std::move(socket), std::nullopt,
                                                                options.max_message_bytes);
      it->server = std::make_unique<LspServer>(*it->transport, engine, model, options, metrics);
      it->server->start([&sessions, it, ex](int code) {
        spdlog::info("session ended (exit code {})", code);
        // Destroy the session after the current handler returns.
        asio::post(ex, [&sessions, it] { sessions.erase(it); });
      });
    }
    accept_loop<Acceptor, Socket>(acceptor, sessions, options, engine, model, metrics);
  });
}

}  // namespace

int run_lsp_stdio(const ServerOptions& options, rt::EngineInterface& engine, ModelState& model) {
  asio::io_context io;
  auto metrics = open_metrics(options);
  int code = 1;
  {
    auto transport = make_stdio_transport(io.get_executor(), options.max_message_bytes);
    LspServer server(*transport, engine, model, options, metrics.get());
    server.start([&code](int c) { code = c; });
    // The loop runs out of work once the session has exited and its last
    // replies are written.
    io.run();
  }
  return code;
}

int run_lsp_socket(const ServerOptions& options, rt::EngineInterface& engine, ModelState& model,
                   std::function<void(unsigned short, std::function<void()>)> on_listening) {
  asio::io_context io;
  auto metrics = open_metrics(options);
  std::list<Session> sessions;
  asio::signal_set signals(io, SIGINT, SIGTERM);
  asio::error_code ec;
  auto stop = [&io] { asio::post(io, [&io] { io.stop(); }); };
  std::optional<asio::ip::tcp::acceptor> tcp;
  std::optional<asio::local::stream_protocol::acceptor> unix_socket;
  const std::string& addr = options.listen;
  if (addr.starts_with("unix:")) {
    std::string path = addr.substr(5);
    std::remove(path.c_str());
    unix_socket.emplace(io);
    asio::local::stream_protocol::endpoint ep(path);
    unix_socket->open(ep.protocol(), ec);
    if (!ec) unix_socket->bind(ep, ec);
    if (!ec) unix_socket->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      spdlog::error("--listen {}: {}", addr, ec.message());
      return 1;
    }
    spdlog::info("listening on {}", addr);
    if (on_listening) on_listening(0, stop);
    accept_loop<asio::local::stream_protocol::acceptor, asio::local::stream_protocol::socket>(
        *unix_socket, sessions, options, engine, model, metrics.get());
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
    tcp.emplace(io);
    asio::ip::tcp::endpoint ep(ip, port);
    tcp->open(ep.protocol(), ec);
    if (!ec) tcp->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) tcp->bind(ep, ec);
    if (!ec) tcp->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      spdlog::error("--listen {}: {}", addr, ec.message());
      return 1;
    }
    unsigned short bound = tcp->local_endpoint().port();
    spdlog::info("listening on {}:{}", ip.to_string(), bound);
    if (on_listening) on_listening(bound, stop);
    accept_loop<asio::ip::tcp::acceptor, asio::ip::tcp::socket>(*tcp, sessions, options, engine, model,
                                                               metrics.get());
  }
  signals.async_wait([&](const asio::error_code&, int) {
    if (tcp) tcp->close();
    if (unix_socket) unix_socket->close();
    io.stop();
  });
  io.run();
  sessions.clear();
  return 0;
}

}  // namespace ghostd::server
