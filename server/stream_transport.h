// Transport over Asio stream objects (descriptors, TCP and Unix sockets,
// TLS over TCP).
#pragma once

#include <array>
#include <asio/read.hpp>
#include <asio/socket_base.hpp>
#include <asio/ssl/stream.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <spdlog/spdlog.h>

#include "server/transport.h"

namespace ghostd::server {

template <class Stream>
struct IsTlsStream : std::false_type {};
template <class Next>
struct IsTlsStream<asio::ssl::stream<Next>> : std::true_type {};

// Reads from `in`, writes to `out` (the same socket when `out` is empty).
// Closing a socket is graceful: after the last queued write it shuts down
// sending and reads (discarding) until the peer closes too, for at most
// kLinger. Closing at once would make the kernel answer bytes the peer is
// still sending with a reset, which can discard replies the peer has not read
// yet (an editor typing on while the daemon shuts down).
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
    if (state_->queue.empty()) close_streams(state_);
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
    std::deque<Frame> frames;                  // decoded, not handed over yet (read_pause)
    std::optional<asio::steady_timer> paused;  // set while read_pause holds them
    std::deque<std::string> queue;
    bool closed = false;
    bool reported_close = false;
    bool peer_closed = false;                  // end of input or a read error
    std::optional<asio::steady_timer> linger;  // set while a socket waits for its peer's close
  };

  static constexpr std::chrono::seconds kLinger{2};
  static constexpr bool kIsTls = IsTlsStream<Stream>::value;
  static constexpr bool kIsSocket = kIsTls || requires(Stream & st, asio::error_code & ec) {
    st.shutdown(asio::socket_base::shutdown_send, ec);
  };

  static void close_stream(Stream& st, asio::error_code& ec) {
    if constexpr (kIsTls) {
      st.lowest_layer().close(ec);
    } else {
      st.close(ec);
    }
  }

  static void close_now(State& st) {
    asio::error_code ec;
    if (st.linger) st.linger->cancel();
    if (st.paused) st.paused->cancel();
    close_stream(st.in, ec);
    if (st.out) close_stream(*st.out, ec);
  }

  // After the last write: descriptors close; a socket whose peer has not
  // closed yet half-closes and lingers (see the class comment).
  static void close_streams(const std::shared_ptr<State>& s) {
    if constexpr (kIsTls) {
      // TLS: close_notify (so the peer knows the stream was not cut), then
      // the socket once the peer answers it or kLinger has passed.
      if (!s->peer_closed && !s->linger) {
        s->linger.emplace(s->in.get_executor(), kLinger);
        s->linger->async_wait([s](const asio::error_code& wait_ec) {
          if (!wait_ec) close_now(*s);
        });
        s->in.async_shutdown([s](const asio::error_code&) { close_now(*s); });
        return;
      }
    } else if constexpr (kIsSocket) {
      if (!s->peer_closed && !s->linger) {
        asio::error_code ec;
        s->in.shutdown(asio::socket_base::shutdown_send, ec);
        if (!ec) {
          s->linger.emplace(s->in.get_executor(), kLinger);
          s->linger->async_wait([s](const asio::error_code& wait_ec) {
            if (!wait_ec) close_now(*s);
          });
          return;
        }
      }
    }
    close_now(*s);
  }

  static void report_close(const std::shared_ptr<State>& s) {
    if (s->reported_close) return;
    s->reported_close = true;
    if (s->handlers.on_close) s->handlers.on_close();
  }

  // Once closed, a socket goes on reading (and dropping what it reads) until
  // its peer closes; a descriptor stops.
  static void read_after_close(const std::shared_ptr<State>& s) {
    report_close(s);
    if constexpr (kIsSocket) read_more(s);
  }

  static void read_more(std::shared_ptr<State> s) {
    auto& st = *s;
    st.in.async_read_some(asio::buffer(st.buf), [s](const asio::error_code& ec, size_t n) {
      if (ec) {
        s->peer_closed = true;
        report_close(s);
        if (s->linger) close_now(*s);  // else the last write closes
        return;
      }
      if (s->closed) {
        read_after_close(s);
        return;
      }
      std::vector<Frame> frames;
      s->decoder.feed(std::string_view(s->buf.data(), n), frames);
      for (auto& f : frames) s->frames.push_back(std::move(f));
      deliver(s);
    });
  }

  // Hands over the decoded frames, pausing where read_pause says, then reads on.
  static void deliver(const std::shared_ptr<State>& s) {
    while (!s->frames.empty() && !s->closed) {
      if (s->handlers.read_pause) {
        const auto wait = s->handlers.read_pause();
        if (wait > std::chrono::steady_clock::duration::zero()) {
          if (!s->paused) s->paused.emplace(s->in.get_executor());
          s->paused->expires_after(wait);
          s->paused->async_wait([s](const asio::error_code& ec) {
            if (ec) {  // cancelled: the streams closed
              read_after_close(s);
              return;
            }
            deliver(s);
          });
          return;
        }
      }
      Frame f = std::move(s->frames.front());
      s->frames.pop_front();
      if (f.kind == Frame::Kind::kMessage) {
        if (s->handlers.on_message) s->handlers.on_message(std::move(f.body));
      } else if (s->handlers.on_frame_error) {
        s->handlers.on_frame_error(f);
      }
    }
    if (s->closed) {
      s->frames.clear();
      read_after_close(s);
      return;
    }
    read_more(s);
  }

  static void write_next(std::shared_ptr<State> s) {
    auto& st = *s;
    asio::async_write(st.writer(), asio::buffer(st.queue.front()), [s](const asio::error_code& ec, size_t) {
      if (ec) {
        spdlog::debug("transport write failed: {}", ec.message());
        s->queue.clear();
        if (s->closed) close_now(*s);
        return;
      }
      s->queue.pop_front();
      if (!s->queue.empty()) {
        write_next(s);
      } else if (s->closed) {
        close_streams(s);
      }
    });
  }

  std::shared_ptr<State> state_;
};

}  // namespace ghostd::server
