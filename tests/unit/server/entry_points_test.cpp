// run_lsp_socket with many sessions at once: every session types into its
// own document and asks for a completion per keystroke without waiting, some
// disconnect mid-typing and come back, and the server is stopped while jobs
// run. (Each accepted connection reads the options, engine, model and metrics
// log it was given; a handler that reads them from a dead frame is caught
// here, and by AddressSanitizer in the sanitizer build.)
#include <doctest/doctest.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "byte_tokenizer.h"
#include "fake_engine.h"
#include "server/lsp_server.h"

using namespace ghostd::server;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

constexpr int kSessions = 8;
constexpr int kKeystrokes = 24;

// The server on its own thread, stopped and joined by the destructor.
class SocketServer {
 public:
  SocketServer(ServerOptions options, ghostd::runtime::EngineInterface& engine, ModelState& model)
      : options_(std::move(options)) {
    thread_ = std::thread([this, &engine, &model] {
      code_ = run_lsp_socket(options_, engine, model, [this](unsigned short p, std::function<void()> s) {
        std::lock_guard lock(mu_);
        stop_ = std::move(s);
        port_ = p;
        listening_ = true;
      });
      exited_ = true;
    });
    for (int i = 0; i < 5000 && !listening_; ++i) std::this_thread::sleep_for(1ms);
    REQUIRE(listening_);
  }
  ~SocketServer() { stop(); }
  unsigned short port() const { return port_; }
  // True once run_lsp_socket returned on its own within `timeout`.
  bool wait_exit(std::chrono::milliseconds timeout) {
    for (auto t = 0ms; t < timeout && !exited_; t += 10ms) std::this_thread::sleep_for(10ms);
    return exited_;
  }
  // Returns run_lsp_socket's exit code.
  int stop() {
    if (thread_.joinable()) {
      {
        std::lock_guard lock(mu_);
        stop_();
      }
      thread_.join();
    }
    return code_;
  }

 private:
  ServerOptions options_;
  std::mutex mu_;
  std::function<void()> stop_;
  std::atomic<unsigned short> port_{0};
  std::atomic<bool> listening_{false};
  std::atomic<int> code_{-1};
  std::atomic<bool> exited_{false};
  std::thread thread_;
};

// One LSP client over a blocking socket: a writer (the test's thread) and a
// reader thread that records every response by id.
template <class Protocol>
class Client {
 public:
  explicit Client(const typename Protocol::endpoint& ep) : socket_(io_) {
    socket_.connect(ep);
    reader_ = std::thread([this] { read_loop(); });
  }
  ~Client() { disconnect(); }

  void send(const json& message) {
    std::string frame = encode_frame(message.dump());
    asio::error_code ec;
    asio::write(socket_, asio::buffer(frame), ec);
  }
  void request(int id, const std::string& method, json params) {
    send({{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", std::move(params)}});
  }
  void notify(const std::string& method, json params) {
    send({{"jsonrpc", "2.0"}, {"method", method}, {"params", std::move(params)}});
  }
  // Waits until every id in `ids` has a response (or the server closed).
  bool wait_for(const std::set<int>& ids, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] {
      if (closed_) return true;
      for (int id : ids)
        if (!responses_.count(id)) return false;
      return true;
    });
  }
  bool wait_closed(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return closed_; });
  }
  // Shutting down ends the reader's blocking read; the descriptor is closed
  // only after the reader is gone (closing it under a read is a race).
  void disconnect() {
    asio::error_code ec;
    socket_.shutdown(asio::socket_base::shutdown_both, ec);
    if (reader_.joinable()) reader_.join();
    socket_.close(ec);
  }
  // id -> every response that carried it (exactly one expected).
  std::map<int, std::vector<json>> responses() {
    std::lock_guard lock(mu_);
    return responses_;
  }

 private:
  void read_loop() {
    asio::error_code ec;
    for (;;) {
      std::string header;
      char c;
      while (!header.ends_with("\r\n\r\n")) {
        if (asio::read(socket_, asio::buffer(&c, 1), ec) != 1) break;
        header += c;
      }
      if (ec) break;
      size_t len = std::stoul(header.substr(header.find(':') + 1));
      std::string body(len, '\0');
      asio::read(socket_, asio::buffer(body), ec);
      if (ec) break;
      json m = json::parse(body);
      if (m.contains("id") && m["id"].is_number_integer() && !m.contains("method")) {
        std::lock_guard lock(mu_);
        responses_[m["id"].get<int>()].push_back(m);
        cv_.notify_all();
      }
    }
    std::lock_guard lock(mu_);
    closed_ = true;
    cv_.notify_all();
  }

  asio::io_context io_;
  typename Protocol::socket socket_;
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<int, std::vector<json>> responses_;
  bool closed_ = false;
};

struct Typed {
  int initialize_id = 0;
  std::set<int> completion_ids;
  int sync_id = 0;  // answered at once, after everything before it was handled
  std::set<int> all() const {
    std::set<int> ids = completion_ids;
    ids.insert(initialize_id);
    ids.insert(sync_id);
    return ids;
  }
};

// Types `keystrokes` characters into its own document, a completion request
// after each without waiting for the previous one.
template <class Protocol>
Typed type_session(Client<Protocol>& c, const std::string& uri, int keystrokes, int& next_id) {
  Typed t;
  t.initialize_id = next_id++;
  c.request(t.initialize_id, "initialize", {{"capabilities", json::object()}});
  c.notify("initialized", json::object());
  c.notify("textDocument/didOpen",
           {{"textDocument", {{"uri", uri}, {"languageId", "python"}, {"version", 1}, {"text", ""}}}});
  const std::string typed = "def total(items): return sum(items)\n";
  for (int k = 0; k < keystrokes; ++k) {
    std::string ch(1, typed[static_cast<size_t>(k) % typed.size()]);
    c.notify("textDocument/didChange",
             {{"textDocument", {{"uri", uri}, {"version", k + 2}}},
              {"contentChanges", json::array({{{"range", {{"start", {{"line", 0}, {"character", k}}},
                                                          {"end", {{"line", 0}, {"character", k}}}}},
                                               {"text", ch}}})}});
    int id = next_id++;
    c.request(id, "textDocument/inlineCompletion",
              {{"textDocument", {{"uri", uri}}},
               {"position", {{"line", 0}, {"character", k + 1}}},
               {"context", {{"triggerKind", 2}}}});
    t.completion_ids.insert(id);
    std::this_thread::sleep_for(1ms);
  }
  // A second initialize is refused at once: its answer means the server has
  // read every message before it.
  t.sync_id = next_id++;
  c.request(t.sync_id, "initialize", {{"capabilities", json::object()}});
  return t;
}

std::map<std::string, std::multiset<std::string>> metrics_lines(const std::filesystem::path& path) {
  std::map<std::string, std::multiset<std::string>> by_document;  // document -> request ids
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    json j = json::parse(line);  // every line is whole JSON: the log was flushed
    if (j["type"] == "completion") by_document[j["document"]].insert(j["request_id"].get<std::string>());
  }
  return by_document;
}

template <class Protocol>
void typing_sessions(ServerOptions opts, typename Protocol::endpoint (*endpoint)(unsigned short),
                     bool with_metrics) {
  auto tok = testing::qwen_tokenizer();
  testing::FakeEngine engine(tok.encode("return 1", false), 1ms);
  ModelState model;
  REQUIRE(model.set_ready("m", make_tokenizer_view(tok)).ok());
  std::filesystem::path metrics = std::filesystem::temp_directory_path() /
                                  ("ghostd-sessions-" + std::to_string(::getpid()) + ".jsonl");
  std::filesystem::remove(metrics);
  if (with_metrics) {
    opts.metrics_log = metrics.string();
    opts.metrics_summary_s = 1;
  }
  SocketServer server(opts, engine, model);
  const auto ep = endpoint(server.port());

  // Session i; odd sessions drop their connection halfway and reconnect.
  struct Outcome {
    std::string uri;
    Typed typed;                                 // on the connection that stayed
    std::map<int, std::vector<json>> responses;  // what it got
    Typed dropped;                               // on the connection it dropped
    std::map<int, std::vector<json>> dropped_responses;
  };
  std::vector<Outcome> outcomes(kSessions);
  std::vector<std::thread> threads;
  for (int i = 0; i < kSessions; ++i) {
    threads.emplace_back([&, i] {
      Outcome& o = outcomes[static_cast<size_t>(i)];
      o.uri = "file:///ws/session" + std::to_string(i) + ".py";
      int next_id = 1;
      if (i % 2 == 1) {
        Client<Protocol> dropped(ep);
        o.dropped = type_session(dropped, o.uri, kKeystrokes / 2, next_id);
        dropped.disconnect();  // mid-typing, requests in flight
        o.dropped_responses = dropped.responses();
      }
      Client<Protocol> c(ep);
      o.typed = type_session(c, o.uri, kKeystrokes, next_id);
      CHECK(c.wait_for(o.typed.all(), 20s));
      int shutdown_id = next_id++;
      c.request(shutdown_id, "shutdown", nullptr);
      CHECK(c.wait_for({shutdown_id}, 5s));
      c.notify("exit", nullptr);
      CHECK(c.wait_closed(5s));
      o.responses = c.responses();
      CHECK(o.responses[shutdown_id].size() == 1);
      o.responses.erase(shutdown_id);
    });
  }
  for (auto& t : threads) t.join();

  // The daemon is alive and serves a new session.
  {
    Client<Protocol> late(ep);
    int next_id = 100;
    auto typed = type_session(late, "file:///ws/late.py", 1, next_id);
    CHECK(late.wait_for(typed.all(), 10s));
    auto got = late.responses();
    for (int id : typed.all()) CHECK(got[id].size() == 1);
  }
  CHECK(server.stop() == 0);

  for (const Outcome& o : outcomes) {
    CAPTURE(o.uri);
    // Exactly one reply per request on the connection that stayed.
    CHECK(o.responses.size() == o.typed.all().size());
    for (int id : o.typed.all()) {
      CAPTURE(id);
      REQUIRE(o.responses.count(id));
      CHECK(o.responses.at(id).size() == 1);
    }
    // At most one on the one that was dropped, and nothing it did not ask.
    for (const auto& [id, rs] : o.dropped_responses) {
      CHECK(o.dropped.all().count(id));
      CHECK(rs.size() == 1);
    }
  }
  if (with_metrics) {
    auto lines = metrics_lines(metrics);
    for (const Outcome& o : outcomes) {
      CAPTURE(o.uri);
      const auto& logged = lines[o.uri];
      // One line per completion request of every session, on both
      // connections: the dropped one's requests that reached the server
      // ended (cancelled) with its session.
      for (int id : o.typed.completion_ids) CHECK(logged.count(std::to_string(id)) == 1);
      for (int id : o.dropped.completion_ids) CHECK(logged.count(std::to_string(id)) <= 1);
      for (const auto& id : logged) {
        CHECK((o.typed.completion_ids.count(std::stoi(id)) || o.dropped.completion_ids.count(std::stoi(id))));
      }
    }
    std::filesystem::remove(metrics);
  }
}

asio::ip::tcp::endpoint tcp_endpoint(unsigned short port) {
  return {asio::ip::make_address("127.0.0.1"), port};
}

std::string unix_path() {
  return (std::filesystem::temp_directory_path() / ("ghostd-test-" + std::to_string(::getpid()) + ".sock")).string();
}

asio::local::stream_protocol::endpoint unix_endpoint(unsigned short) { return {unix_path()}; }

}  // namespace

TEST_CASE("TCP: 8 sessions typing at once, connecting and disconnecting, each request answered once") {
  ServerOptions opts;
  opts.listen = "127.0.0.1:0";
  SUBCASE("without a metrics log") { typing_sessions<asio::ip::tcp>(opts, tcp_endpoint, false); }
  SUBCASE("with a metrics log") { typing_sessions<asio::ip::tcp>(opts, tcp_endpoint, true); }
}

TEST_CASE("Unix socket: 8 sessions typing at once, connecting and disconnecting, each request answered once") {
  ServerOptions opts;
  opts.listen = "unix:" + unix_path();
  SUBCASE("without a metrics log") { typing_sessions<asio::local::stream_protocol>(opts, unix_endpoint, false); }
  SUBCASE("with a metrics log") { typing_sessions<asio::local::stream_protocol>(opts, unix_endpoint, true); }
  CHECK_FALSE(std::filesystem::exists(unix_path()));  // removed on the way out
}

TEST_CASE("stopping a socket server while sessions type and jobs run: every request answered, log flushed, 0") {
  auto tok = testing::qwen_tokenizer();
  // Slow jobs, so completions are running when the server stops.
  testing::FakeEngine engine(tok.encode("return a_long_completion_that_takes_time", false), 50ms);
  ModelState model;
  REQUIRE(model.set_ready("m", make_tokenizer_view(tok)).ok());
  std::filesystem::path metrics = std::filesystem::temp_directory_path() /
                                  ("ghostd-stop-" + std::to_string(::getpid()) + ".jsonl");
  std::filesystem::remove(metrics);
  ServerOptions opts;
  opts.listen = "127.0.0.1:0";
  opts.metrics_log = metrics.string();
  opts.deadline_ms = 60000;
  SocketServer server(opts, engine, model);
  std::vector<std::unique_ptr<Client<asio::ip::tcp>>> clients;
  std::vector<Typed> typed(kSessions);
  for (int i = 0; i < kSessions; ++i) {
    clients.push_back(std::make_unique<Client<asio::ip::tcp>>(tcp_endpoint(server.port())));
    int next_id = 1;
    typed[static_cast<size_t>(i)] =
        type_session(*clients.back(), "file:///ws/stop" + std::to_string(i) + ".py", 4, next_id);
  }
  // Every message reached the server; the last completions are running.
  for (int i = 0; i < kSessions; ++i) {
    CHECK(clients[static_cast<size_t>(i)]->wait_for({typed[static_cast<size_t>(i)].sync_id}, 10s));
  }
  // Prompts are built off the event loop, so a job reaches the engine after
  // its request's sync reply, and a completion superseded while its prompt
  // was built never does: at least the last of each session's, at most all.
  for (int i = 0; i < 1000 && engine.submitted() < kSessions; ++i) std::this_thread::sleep_for(10ms);
  CHECK(engine.submitted() >= kSessions);
  CHECK(engine.submitted() <= kSessions * 4);
  CHECK(server.stop() == 0);
  size_t completions = 0;
  for (int i = 0; i < kSessions; ++i) {
    auto& c = *clients[static_cast<size_t>(i)];
    CHECK(c.wait_closed(5s));  // the server closed the connection
    auto got = c.responses();
    for (int id : typed[static_cast<size_t>(i)].all()) {
      CAPTURE(id);
      REQUIRE(got.count(id));
      CHECK(got[id].size() == 1);
    }
    completions += typed[static_cast<size_t>(i)].completion_ids.size();
    // The last completion was still running: cancelled by the shutdown.
    int last = *typed[static_cast<size_t>(i)].completion_ids.rbegin();
    CHECK(got[last][0]["error"]["code"] == -32800);
  }
  auto lines = metrics_lines(metrics);
  size_t logged = 0;
  for (auto& [_, ids_logged] : lines) logged += ids_logged.size();
  CHECK(logged == completions);
  std::filesystem::remove(metrics);
}

TEST_CASE("a device that failed for good ends every session and the daemon with exit code 3") {
  auto tok = testing::qwen_tokenizer();
  testing::FakeEngine engine(tok.encode("return x", false), 1ms);
  ModelState model;
  REQUIRE(model.set_ready("m", make_tokenizer_view(tok)).ok());
  ServerOptions opts;
  opts.listen = "127.0.0.1:0";
  SocketServer server(opts, engine, model);
  Client<asio::ip::tcp> client(tcp_endpoint(server.port()));
  int next_id = 1;
  const Typed typed = type_session(client, "file:///ws/lost.py", 2, next_id);
  REQUIRE(client.wait_for({typed.sync_id}, 10s));
  CHECK_FALSE(server.wait_exit(1500ms));  // a working device: the daemon stays
  engine.set_fatal("fake device: an illegal memory access (sticky)");
  CHECK(server.wait_exit(5s));
  CHECK(server.stop() == kExitDeviceLost);
  CHECK(client.wait_closed(5s));
  // Every request that reached the daemon was answered.
  auto got = client.responses();
  for (int id : typed.all()) CHECK(got.count(id) == 1);
}
