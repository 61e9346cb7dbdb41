// Transport over Asio stream objects (descriptors, TCP and Unix sockets).
#pragma once

#include <array>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include <deque>
#include <memory>
#include <optional>
#include <spdlog/spdlog.h>

#include "server/transport.h"

namespace ghostd::server {

// Reads from `in`, writes to `out` (the same socket when `out` is empty).
// Thread-safety: not thread-safe; all calls on the stream's executor.
template <class Stream>
class StreamTransport : public Transport {
 public:
  StreamTransport(Stream in, std::optional<Stream> out, size_t max_message_bytes)
      : state_(std::make_shared<State>(std::move(in), std::move(out), max_message_bytes)) {}
  // Queued writes still finish (their handlers own the state); no handler
  // of the owner runs after this.
  ~StreamTransport() override {
    close();
    state_->handlers = {};
  }

  void start(TransportHandlers handlers) override {
    state_->handlers = std::move(handlers);
    read_more(state_);
  }
  void send(std::string body) override {
    if (state_->closed && state_->queue.empty()) return;
    state_->queue.push_back(encode_frame(body));
    if (state_->queue.size() == 1) write_next(state_);
  }
  void close() override {
    if (state_->closed) return;
    state_->closed = true;
    // Queued replies (e.g. to shutdown) still go out; the streams close after them.
    if (state_->queue.empty()) close_streams(*state_);
  }
  asio::any_io_executor executor() const override { return state_->in.get_executor(); }

 private:
  struct State {
    State(Stream i, std::optional<Stream> o, size_t max_bytes)
        : in(std::move(i)), out(std::move(o)), decoder(max_bytes) {}
    Stream& writer() { return out ? *out : in; }
    Stream in;
    std::optional<Stream> out;
    FrameDecoder decoder;
    TransportHandlers handlers;
    std::array<char, 65536> buf;
    std::deque<std::string> queue;
    bool closed = false;
    bool reported_close = false;
  };

  static void close_streams(State& st) {
    asio::error_code ec;
    st.in.close(ec);
    if (st.out) st.out->close(ec);
  }

  static void report_close(const std::shared_ptr<State>& s) {
    if (s->reported_close) return;
    s->reported_close = true;
    if (s->handlers.on_close) s->handlers.on_close();
  }

  static void read_more(std::shared_ptr<State> s) {
    if (s->closed) return;
    auto& st = *s;
    st.in.async_read_some(asio::buffer(st.buf), [s](const asio::error_code& ec, size_t n) {
      if (ec || s->closed) {
        report_close(s);
        return;
      }
      std::vector<Frame> frames;
      s->decoder.feed(std::string_view(s->buf.data(), n), frames);
      for (auto& f : frames) {
        if (s->closed) break;
        if (f.kind == Frame::Kind::kMessage) {
          if (s->handlers.on_message) s->handlers.on_message(std::move(f.body));
        } else if (s->handlers.on_frame_error) {
          s->handlers.on_frame_error(f);
        }
      }
      if (s->closed) {
        report_close(s);
        return;
      }
      read_more(s);
    });
  }

  static void write_next(std::shared_ptr<State> s) {
    auto& st = *s;
    asio::async_write(st.writer(), asio::buffer(st.queue.front()), [s](const asio::error_code& ec, size_t) {
      if (ec) {
        spdlog::debug("transport write failed: {}", ec.message());
        s->queue.clear();
        if (s->closed) close_streams(*s);
        return;
      }
      s->queue.pop_front();
      if (!s->queue.empty()) {
        write_next(s);
      } else if (s->closed) {
        close_streams(*s);
      }
    });
  }

  std::shared_ptr<State> state_;
};

}  // namespace ghostd::server
