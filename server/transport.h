// Transports carry framed LSP messages: stdio (editors spawn the daemon),
// TCP and Unix sockets (several clients, one session each), and an in-memory
// transport that tests drive.
#pragma once

#include <asio/any_io_executor.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "server/framing.h"

namespace ghostd::server {

struct TransportHandlers {
  std::function<void(std::string body)> on_message;
  // A framing error (oversized message, malformed header); the stream goes on.
  std::function<void(const Frame& error)> on_frame_error;
  // End of input or a read error; called once.
  std::function<void()> on_close;
  // Asked before each message is handed over: a positive duration holds
  // that message and the rest (and further reads, so the peer's sends back
  // up in its socket) that long, then asks again. How a session's request
  // rate limit slows a flooding peer down at no cost to the event loop.
  // Transports that cannot pause ignore it.
  std::function<std::chrono::steady_clock::duration()> read_pause;
};

// Reads and writes whole messages.
// Thread-safety: not thread-safe; every call and every handler runs on the
// transport's executor.
class Transport {
 public:
  virtual ~Transport() = default;
  virtual void start(TransportHandlers handlers) = 0;
  // Queues one message body; writes keep their order.
  virtual void send(std::string body) = 0;
  virtual void close() = 0;
  virtual asio::any_io_executor executor() const = 0;
};

inline constexpr size_t kDefaultMaxMessageBytes = 64u << 20;

// Reads fd 0 and writes fd 1. When fd 0 cannot be polled (a regular file), a
// reader thread feeds the executor instead.
std::unique_ptr<Transport> make_stdio_transport(asio::any_io_executor ex, size_t max_message_bytes,
                                                int in_fd = 0, int out_fd = 1);

// Test transport: the test pushes client bytes and reads what the server sent.
// Thread-safety: not thread-safe; call on the executor's thread (tests run
// the io_context themselves).
class MemoryTransport : public Transport {
 public:
  MemoryTransport(asio::any_io_executor ex, size_t max_message_bytes = kDefaultMaxMessageBytes)
      : ex_(std::move(ex)), decoder_(max_message_bytes) {}

  void start(TransportHandlers handlers) override { handlers_ = std::move(handlers); }
  void send(std::string body) override { sent_.push_back(std::move(body)); }
  void close() override;
  asio::any_io_executor executor() const override { return ex_; }

  // Client side: raw bytes (framing included) or one framed message.
  void push_bytes(std::string_view bytes);
  void push_message(std::string_view body) { push_bytes(encode_frame(body)); }
  void push_eof() { close(); }

  std::vector<std::string>& sent() { return sent_; }
  bool closed() const { return closed_; }

 private:
  asio::any_io_executor ex_;
  FrameDecoder decoder_;
  TransportHandlers handlers_;
  std::vector<std::string> sent_;
  bool closed_ = false;
};

}  // namespace ghostd::server
