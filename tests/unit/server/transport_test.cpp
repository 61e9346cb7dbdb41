#include "server/transport.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include <atomic>
#include <nlohmann/json.hpp>
#include <thread>

#include "byte_tokenizer.h"
#include "fake_engine.h"
#include "server/lsp_server.h"

using namespace ghostd::server;
using namespace std::chrono_literals;

TEST_CASE("stdio transport over pipes: framing both ways, close at EOF") {
  int in[2], out[2];
  REQUIRE(::pipe(in) == 0);
  REQUIRE(::pipe(out) == 0);
  asio::io_context io;
  auto t = make_stdio_transport(io.get_executor(), 1 << 20, in[0], out[1]);
  std::vector<std::string> got;
  bool closed = false;
  t->start({[&](std::string body) { got.push_back(body); }, [](const Frame&) {}, [&] { closed = true; }});
  std::string wire = encode_frame("{\"a\":1}") + encode_frame("[2]");
  REQUIRE(::write(in[1], wire.data(), wire.size()) == static_cast<ssize_t>(wire.size()));
  ::close(in[1]);
  t->send("{\"b\":2}");
  io.run_for(200ms);
  CHECK(got == std::vector<std::string>{"{\"a\":1}", "[2]"});
  CHECK(closed);
  char buf[64] = {};
  ssize_t n = ::read(out[0], buf, sizeof buf);
  CHECK(std::string(buf, static_cast<size_t>(std::max<ssize_t>(n, 0))) == encode_frame("{\"b\":2}"));
  t.reset();
  ::close(in[0]);
  ::close(out[0]);
  ::close(out[1]);
}

TEST_CASE("read_pause holds messages and reading, in order, then hands them over") {
  int in[2], out[2];
  REQUIRE(::pipe(in) == 0);
  REQUIRE(::pipe(out) == 0);
  asio::io_context io;
  auto t = make_stdio_transport(io.get_executor(), 1 << 20, in[0], out[1]);
  std::vector<std::string> got;
  int asked = 0;
  auto start = std::chrono::steady_clock::now();
  TransportHandlers h{[&](std::string body) { got.push_back(body); }, [](const Frame&) {}, [] {}};
  // The first message waits 150 ms; the second goes through at once.
  h.read_pause = [&]() -> std::chrono::steady_clock::duration {
    ++asked;
    return got.empty() && std::chrono::steady_clock::now() - start < 150ms ? 150ms : 0ms;
  };
  t->start(std::move(h));
  std::string wire = encode_frame("{\"a\":1}") + encode_frame("[2]");
  REQUIRE(::write(in[1], wire.data(), wire.size()) == static_cast<ssize_t>(wire.size()));
  io.run_for(60ms);
  CHECK(got.empty());
  io.run_for(400ms);
  CHECK(got == std::vector<std::string>{"{\"a\":1}", "[2]"});
  CHECK(asked >= 3);  // before the pause, after it, and before the second message
  t.reset();
  ::close(in[1]);
  ::close(in[0]);
  ::close(out[0]);
  ::close(out[1]);
}

TEST_CASE("TCP: several clients, each its own session") {
  auto tok = testing::qwen_tokenizer();
  testing::FakeEngine engine(tok.encode("1", false), 1ms);
  ModelState model;
  REQUIRE(model.set_ready("m", make_tokenizer_view(tok)).ok());
  ServerOptions opts;
  opts.listen = "127.0.0.1:0";
  std::atomic<unsigned short> port{0};
  std::function<void()> stop;
  std::mutex mu;
  std::thread server([&] {
    run_lsp_socket(opts, engine, model, [&](unsigned short p, std::function<void()> s) {
      std::lock_guard lock(mu);
      stop = s;
      port = p;
    });
  });
  while (port == 0) std::this_thread::sleep_for(1ms);

  auto roundtrip = [&](asio::ip::tcp::socket& sock, const std::string& body) {
    std::string frame = encode_frame(body);
    asio::write(sock, asio::buffer(frame));
    std::string header;
    char c;
    while (!header.ends_with("\r\n\r\n")) {
      asio::read(sock, asio::buffer(&c, 1));
      header += c;
    }
    size_t len = std::stoul(header.substr(header.find(':') + 1));
    std::string reply(len, '\0');
    asio::read(sock, asio::buffer(reply));
    return nlohmann::json::parse(reply);
  };
  asio::io_context client_io;
  asio::ip::tcp::socket a(client_io), b(client_io);
  asio::ip::tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
  a.connect(ep);
  b.connect(ep);
  auto ra = roundtrip(a, R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"capabilities":{}}})");
  CHECK(ra["result"]["capabilities"]["positionEncoding"] == "utf-16");
  // b has not initialized: its session is separate.
  auto rb = roundtrip(b, R"({"jsonrpc":"2.0","id":1,"method":"shutdown"})");
  CHECK(rb["error"]["code"] == -32002);
  auto sa = roundtrip(a, R"({"jsonrpc":"2.0","id":2,"method":"shutdown"})");
  CHECK(sa["result"].is_null());
  {
    std::lock_guard lock(mu);
    stop();
  }
  server.join();
}
