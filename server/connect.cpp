// The bridge: editor <-stdio-> ghostd connect <-TLS/TCP-> ghostd serve.
//
// It adds initializationOptions.token to the editor's initialize, and keeps
// what a new connection needs to stand in for the old one: the initialize
// params and every open document's current text (the editor's didOpen and
// didChange applied to a DocumentStore, in the negotiated encoding). When
// the server goes away (a restart, a drained backend) it answers the
// editor's unanswered requests with an error (each exactly once), reconnects
// with back-off, and replays initialize, initialized and a didOpen per open
// document; the replayed initialize's reply is its own, not the editor's.
#include "server/connect.h"

#include <spdlog/spdlog.h>
#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/signal_set.hpp>
#include <asio/ssl/context.hpp>
#include <asio/ssl/host_name_verification.hpp>
#include <asio/ssl/stream.hpp>
#include <asio/steady_timer.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "server/documents.h"
#include "server/jsonrpc.h"
#include "server/protocol.h"
#include "server/stream_transport.h"
#include "server/transport.h"

namespace ghostd::server {

namespace {

constexpr const char* kUsage =
    "usage: ghostd connect tls://HOST:PORT | tcp://HOST:PORT [options]\n"
    "  stdio language server for an editor, bridged to a shared `ghostd serve --listen`\n"
    "  --token-file PATH        file holding the token (else the GHOSTD_TOKEN environment "
    "variable)\n"
    "  --ca-file PEM            trust this CA (or self-signed certificate) instead of the "
    "system's\n"
    "  --insecure               allow tcp:// to a non-loopback host\n"
    "  --log-level LEVEL        trace|debug|info|warn|error|off (warn; logs go to stderr)\n"
    "  The editor's initializationOptions go through (model: a name the server offers).\n";
constexpr std::chrono::milliseconds kFirstRetry{100};
constexpr std::chrono::milliseconds kMaxRetry{2000};
constexpr const char* kReplayId = "ghostd-connect/initialize";

struct Target {
  bool tls = false;
  std::string host;
  std::string port;
};

std::optional<Target> parse_target(std::string_view url) {
  Target t;
  if (url.starts_with("tls://")) {
    t.tls = true;
    url.remove_prefix(6);
  } else if (url.starts_with("tcp://")) {
    url.remove_prefix(6);
  } else {
    return std::nullopt;
  }
  size_t colon = url.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == url.size()) return std::nullopt;
  t.host = std::string(url.substr(0, colon));
  t.port = std::string(url.substr(colon + 1));
  if (t.host.size() > 2 && t.host.front() == '[' && t.host.back() == ']')
    t.host = t.host.substr(1, t.host.size() - 2);
  return t;
}

using TlsStream = asio::ssl::stream<asio::ip::tcp::socket>;

// Thread-safety: not thread-safe; everything on the io_context's thread.
class Bridge {
 public:
  Bridge(asio::io_context& io, Target target, std::string token, asio::ssl::context* tls)
      : io_(io),
        target_(std::move(target)),
        token_(std::move(token)),
        tls_(tls),
        retry_(io),
        resolver_(io) {}

  void start() {
    editor_ = make_stdio_transport(io_.get_executor(), kDefaultMaxMessageBytes);
    editor_->start({[this](std::string body) { from_editor(std::move(body)); },
                    [this](const Frame& f) {
                      editor_->send(
                          dump_json({{"jsonrpc", "2.0"},
                                     {"id", nullptr},
                                     {"error", {{"code", -32700}, {"message", f.error}}}}));
                    },
                    [this] { editor_gone(); }});
    connect();
  }
  int exit_code() const { return exit_code_; }

 private:
  void from_editor(std::string body) {
    json msg = json::parse(body, nullptr, false);
    if (!msg.is_object()) {
      forward(std::move(body));  // the server answers it as it would
      return;
    }
    const std::string method = msg.value("method", "");
    const bool request = msg.contains("id") && !method.empty();
    if (method == "initialize" && request) {
      json& params = msg["params"];
      if (!params.is_object()) params = json::object();
      if (!params.contains("initializationOptions") ||
          !params["initializationOptions"].is_object()) {
        params["initializationOptions"] = json::object();
      }
      if (!token_.empty()) params["initializationOptions"]["token"] = token_;
      init_params_ = params;
      init_id_ = msg["id"];
      body = dump_json(msg);
    } else if (method == "initialized") {
      initialized_ = true;
    } else if (method == "exit") {
      exiting_ = true;
    }
    track_documents(method, msg);
    if (!ever_connected_) {
      // Until the first connection the editor's messages wait (its
      // initialize must reach the server).
      if (request) in_flight_[dump_json(msg["id"])] = msg["id"];
      early_.push_back(std::move(body));
      return;
    }
    if (request) {
      if (!server_ || !connected_) {
        // Answered now rather than held: a completion is worthless later.
        editor_->send(dump_json(
            {{"jsonrpc", "2.0"},
             {"id", msg["id"]},
             {"error",
              {{"code", static_cast<int>(ErrorCode::kRequestFailed)},
               {"message", "ghostd connect: not connected to " + url() + "; retrying"}}}}));
        return;
      }
      in_flight_[dump_json(msg["id"])] = msg["id"];
    }
    if (!msg.contains("method") && msg.contains("id") && !connected_)
      return;  // a reply to a gone server
    forward(std::move(body));
  }

  void track_documents(const std::string& method, const json& msg) {
    if (!msg.contains("params")) return;
    const json& p = msg["params"];
    if (method == "textDocument/didOpen") {
      if (auto d = parse_did_open(p); d.ok()) {
        docs_.open(d->text_document.uri, d->text_document.language_id, d->text_document.version,
                   d->text_document.text);
      }
    } else if (method == "textDocument/didChange") {
      if (auto d = parse_did_change(p); d.ok()) {
        if (auto s = docs_.change(d->uri, d->version, d->changes, encoding_); !s.ok()) {
          spdlog::warn("ghostd connect: didChange {}: {}", d->uri, s.message());
        }
      }
    } else if (method == "textDocument/didClose") {
      if (auto d = parse_did_close(p); d.ok()) docs_.close(d->uri);
    }
  }

  void forward(std::string body) {
    if (server_ && connected_) server_->send(std::move(body));
  }

  void from_server(std::string body) {
    json msg = json::parse(body, nullptr, false);
    if (msg.is_object() && msg.contains("id") && !msg.contains("method")) {
      if (msg["id"] == kReplayId) {
        replayed(msg);
        return;
      }
      in_flight_.erase(dump_json(msg["id"]));
      if (init_id_ && msg["id"] == *init_id_) {
        if (msg.contains("result") && msg["result"].is_object()) {
          const json& caps = msg["result"].value("capabilities", json::object());
          const std::string enc = caps.value("positionEncoding", "utf-16");
          encoding_ = enc == "utf-8"    ? PositionEncoding::kUtf8
                      : enc == "utf-32" ? PositionEncoding::kUtf32
                                        : PositionEncoding::kUtf16;
        } else if (msg.contains("error") &&
                   msg["error"].value("code", 0) == static_cast<int>(ErrorCode::kUnauthorized)) {
          spdlog::error("ghostd connect: {} refused the token: {}", url(),
                        msg["error"].value("message", ""));
          give_up_ = true;
        }
      }
    }
    editor_->send(std::move(body));
  }

  // The reconnected server's answer to the replayed initialize.
  void replayed(const json& msg) {
    if (!msg.contains("result")) {
      spdlog::error("ghostd connect: {} refused the replayed initialize: {}", url(),
                    msg.value("error", json::object()).value("message", std::string("?")));
      if (msg.contains("error") &&
          msg["error"].value("code", 0) == static_cast<int>(ErrorCode::kUnauthorized)) {
        give_up_ = true;
      }
      server_->close();
      return;
    }
    if (initialized_)
      server_->send(
          dump_json({{"jsonrpc", "2.0"}, {"method", "initialized"}, {"params", json::object()}}));
    for (const Document* d : docs_.in_open_order()) {
      json item = {{"uri", d->uri()},
                   {"languageId", d->language_id()},
                   {"version", d->version()},
                   {"text", d->text().str()}};
      json open = {{"jsonrpc", "2.0"},
                   {"method", "textDocument/didOpen"},
                   {"params", {{"textDocument", item}}}};
      server_->send(dump_json(open));
    }
    connected_ = true;
    spdlog::info("ghostd connect: reconnected to {}; replayed {} open documents", url(),
                 docs_.size());
  }

  std::string url() const {
    return (target_.tls ? "tls://" : "tcp://") + target_.host + ":" + target_.port;
  }

  void connect() {
    if (exiting_ || editor_closed_) return;
    resolver_.async_resolve(
        target_.host, target_.port,
        [this](const asio::error_code& ec, asio::ip::tcp::resolver::results_type results) {
          if (ec) {
            spdlog::warn("ghostd connect: {}: {}", url(), ec.message());
            retry();
            return;
          }
          auto socket = std::make_shared<asio::ip::tcp::socket>(io_);
          asio::async_connect(*socket, results,
                              [this, socket](const asio::error_code& cec, const auto&) {
                                if (cec) {
                                  spdlog::warn("ghostd connect: {}: {}", url(), cec.message());
                                  retry();
                                  return;
                                }
                                asio::error_code nd;
                                socket->set_option(asio::ip::tcp::no_delay(true), nd);
                                on_connected(std::move(*socket));
                              });
        });
  }

  void on_connected(asio::ip::tcp::socket socket) {
    if (!tls_) {
      attach(std::make_unique<StreamTransport<asio::ip::tcp::socket>>(
          std::move(socket), std::nullopt, kDefaultMaxMessageBytes));
      return;
    }
    auto stream = std::make_shared<TlsStream>(std::move(socket), *tls_);
    SSL_set_tlsext_host_name(stream->native_handle(), target_.host.c_str());  // SNI
    stream->set_verify_callback(asio::ssl::host_name_verification(target_.host));
    stream->async_handshake(
        asio::ssl::stream_base::client, [this, stream](const asio::error_code& ec) {
          if (ec) {
            spdlog::warn("ghostd connect: TLS handshake with {}: {}", url(), ec.message());
            retry();
            return;
          }
          attach(std::make_unique<StreamTransport<TlsStream>>(std::move(*stream), std::nullopt,
                                                              kDefaultMaxMessageBytes));
        });
  }

  void attach(std::unique_ptr<Transport> t) {
    backoff_ = kFirstRetry;
    server_ = std::move(t);
    const uint64_t generation = ++generation_;
    server_->start({[this](std::string body) { from_server(std::move(body)); },
                    {},
                    [this, generation] {
                      // Destroyed after this handler returns, on the loop.
                      asio::post(io_, [this, generation] {
                        if (generation == generation_) server_gone();
                      });
                    }});
    if (!ever_connected_) {
      ever_connected_ = true;
      connected_ = true;  // the editor's own initialize comes through
      for (auto& body : early_) server_->send(std::move(body));
      early_.clear();
      return;
    }
    if (!init_params_) {
      connected_ = true;
      return;
    }
    server_->send(dump_json({{"jsonrpc", "2.0"},
                             {"id", kReplayId},
                             {"method", "initialize"},
                             {"params", *init_params_}}));
  }

  void server_gone() {
    const bool was_connected = connected_;
    connected_ = false;
    server_.reset();
    for (auto& [_, id] : in_flight_) {
      editor_->send(dump_json({{"jsonrpc", "2.0"},
                               {"id", id},
                               {"error",
                                {{"code", static_cast<int>(ErrorCode::kRequestFailed)},
                                 {"message", "ghostd connect: the connection to " + url() +
                                                 " closed; reconnecting"}}}}));
    }
    in_flight_.clear();
    if (exiting_ || editor_closed_ || give_up_) {
      if (give_up_) exit_code_ = 1;
      finish();
      return;
    }
    if (was_connected) spdlog::warn("ghostd connect: lost {}; reconnecting", url());
    retry();
  }

  void retry() {
    if (exiting_ || editor_closed_) return;
    retry_.expires_after(backoff_);
    backoff_ = std::min(backoff_ * 2, kMaxRetry);
    retry_.async_wait([this](const asio::error_code& ec) {
      if (!ec) connect();
    });
  }

  void editor_gone() {
    editor_closed_ = true;
    if (server_) {
      server_->close();  // the session ends as when the editor leaves
    }
    finish();
  }

  void finish() {
    retry_.cancel();
    resolver_.cancel();
    if (editor_) editor_->close();
    if (!server_) return;
    server_->close();
  }

  asio::io_context& io_;
  Target target_;
  std::string token_;
  asio::ssl::context* tls_;
  asio::steady_timer retry_;
  asio::ip::tcp::resolver resolver_;
  std::unique_ptr<Transport> editor_;
  std::unique_ptr<Transport> server_;
  uint64_t generation_ = 0;
  bool connected_ = false;  // the server has this session's state (initialize replayed)
  bool ever_connected_ = false;
  std::vector<std::string> early_;  // editor messages before the first connection
  bool initialized_ = false;
  bool exiting_ = false;
  bool editor_closed_ = false;
  bool give_up_ = false;
  int exit_code_ = 0;
  std::chrono::milliseconds backoff_ = kFirstRetry;
  std::optional<json> init_params_;
  std::optional<json> init_id_;
  std::map<std::string, json> in_flight_;  // the editor's requests the server has not answered
  DocumentStore docs_;
  PositionEncoding encoding_ = PositionEncoding::kUtf16;
};

std::string read_token_file(const std::string& path, std::string& error) {
  std::ifstream in(path);
  if (!in) {
    error = "--token-file " + path + ": cannot read the file";
    return {};
  }
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
      line.pop_back();
    size_t start = line.find_first_not_of(" \t");
    if (start != std::string::npos && line[start] != '#') return line.substr(start);
  }
  error = "--token-file " + path + ": no token in the file";
  return {};
}

}  // namespace

int run_connect(std::span<char*> args) {
  std::string url, token_file, ca_file, log_level = "warn";
  bool insecure = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view a = args[i];
    auto value = [&](std::string& out) -> bool {
      if (i + 1 >= args.size()) return false;
      out = args[++i];
      return true;
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--token-file") {
      if (!value(token_file))
        return std::fprintf(stderr, "ghostd connect: --token-file: missing value\n"), 2;
    } else if (a == "--ca-file") {
      if (!value(ca_file))
        return std::fprintf(stderr, "ghostd connect: --ca-file: missing value\n"), 2;
    } else if (a == "--log-level") {
      if (!value(log_level))
        return std::fprintf(stderr, "ghostd connect: --log-level: missing value\n"), 2;
    } else if (a == "--insecure") {
      insecure = true;
    } else if (!a.starts_with("--") && url.empty()) {
      url = a;
    } else {
      std::fprintf(stderr, "ghostd connect: unknown argument %s\n%s", args[i], kUsage);
      return 2;
    }
  }
  auto target = parse_target(url);
  if (!target) {
    std::fprintf(stderr,
                 "ghostd connect: expected tls://HOST:PORT or tcp://HOST:PORT, got '%s'\n%s",
                 url.c_str(), kUsage);
    return 2;
  }
  spdlog::set_level(spdlog::level::from_str(log_level));
  asio::error_code ec;
  if (!target->tls && !insecure) {
    auto ip = asio::ip::make_address(target->host == "localhost" ? "127.0.0.1" : target->host, ec);
    if (ec || !ip.is_loopback()) {
      std::fprintf(stderr,
                   "ghostd connect: tcp://%s is not loopback: the code you type would cross the "
                   "network in clear "
                   "text. Use tls://, or --insecure on a network you trust\n",
                   target->host.c_str());
      return 2;
    }
  }
  std::string token;
  if (!token_file.empty()) {
    std::string error;
    token = read_token_file(token_file, error);
    if (!error.empty()) return std::fprintf(stderr, "ghostd connect: %s\n", error.c_str()), 2;
  } else if (const char* env = std::getenv("GHOSTD_TOKEN")) {
    token = env;
  }
  std::optional<asio::ssl::context> tls;
  if (target->tls) {
    tls.emplace(asio::ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(tls->native_handle(), TLS1_2_VERSION);
    if (!ca_file.empty()) {
      tls->load_verify_file(ca_file, ec);
    } else {
      tls->set_default_verify_paths(ec);
    }
    if (ec)
      return std::fprintf(stderr, "ghostd connect: --ca-file %s: %s\n", ca_file.c_str(),
                          ec.message().c_str()),
             2;
    tls->set_verify_mode(asio::ssl::verify_peer);
  }
  asio::io_context io;
  Bridge bridge(io, *target, token, tls ? &*tls : nullptr);
  bridge.start();
  io.run();
  return bridge.exit_code();
}

}  // namespace ghostd::server
