#include "server/transport.h"

#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <asio/post.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/write.hpp>
#include <deque>
#include <spdlog/spdlog.h>
#include <thread>

#include "server/mailbox.h"
#include "server/stream_transport.h"

namespace ghostd::server {

void MemoryTransport::push_bytes(std::string_view bytes) {
  if (closed_) return;
  std::vector<Frame> frames;
  decoder_.feed(bytes, frames);
  for (auto& f : frames) {
    if (f.kind == Frame::Kind::kMessage) {
      if (handlers_.on_message) handlers_.on_message(std::move(f.body));
    } else if (handlers_.on_frame_error) {
      handlers_.on_frame_error(f);
    }
  }
}

void MemoryTransport::close() {
  if (closed_) return;
  closed_ = true;
  if (handlers_.on_close) handlers_.on_close();
}

namespace {

using Descriptor = asio::posix::stream_descriptor;

// stdio over a regular-file stdin (e.g. `ghostd < session.txt`): epoll cannot
// watch it, so a thread reads it and posts the bytes to the executor.
class ThreadedStdioTransport : public Transport {
 public:
  ThreadedStdioTransport(asio::any_io_executor ex, size_t max_bytes, int in_fd, int out_fd)
      : ex_(ex),
        state_(std::make_shared<State>(max_bytes)),
        mailbox_(std::make_shared<Mailbox>(ex)),
        in_fd_(in_fd),
        out_fd_(out_fd) {}
  ~ThreadedStdioTransport() override {
    mailbox_->close();
    state_->alive = false;
    if (reader_.joinable()) reader_.detach();  // blocked in read(); it only touches shared state
  }

  void start(TransportHandlers handlers) override {
    state_->handlers = std::move(handlers);
    auto state = state_;
    auto mailbox = mailbox_;
    int fd = in_fd_;
    reader_ = std::thread([state, mailbox, fd] {
      std::array<char, 65536> buf;
      for (;;) {
        ssize_t n = ::read(fd, buf.data(), buf.size());
        if (n <= 0) break;
        std::string chunk(buf.data(), static_cast<size_t>(n));
        mailbox->post([state, chunk = std::move(chunk)] { state->feed(chunk); });
      }
      mailbox->post([state] { state->finish(); });
    });
  }
  void send(std::string body) override {
    std::string frame = encode_frame(body);
    size_t off = 0;
    while (off < frame.size()) {
      ssize_t n = ::write(out_fd_, frame.data() + off, frame.size() - off);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }
  void close() override { state_->finish(); }
  asio::any_io_executor executor() const override { return ex_; }

 private:
  struct State {
    explicit State(size_t max_bytes) : decoder(max_bytes) {}
    void feed(std::string_view chunk) {
      if (!alive || closed) return;
      std::vector<Frame> frames;
      decoder.feed(chunk, frames);
      for (auto& f : frames) {
        if (!alive || closed) return;
        if (f.kind == Frame::Kind::kMessage) {
          handlers.on_message(std::move(f.body));
        } else if (handlers.on_frame_error) {
          handlers.on_frame_error(f);
        }
      }
    }
    void finish() {
      if (!alive || closed) return;
      closed = true;
      if (handlers.on_close) handlers.on_close();
    }
    FrameDecoder decoder;
    TransportHandlers handlers;
    bool alive = true;
    bool closed = false;
  };
  asio::any_io_executor ex_;
  std::shared_ptr<State> state_;
  std::shared_ptr<Mailbox> mailbox_;
  int in_fd_;
  int out_fd_;
  std::thread reader_;
};

}  // namespace

std::unique_ptr<Transport> make_stdio_transport(asio::any_io_executor ex, size_t max_message_bytes, int in_fd,
                                                int out_fd) {
  struct stat st {};
  bool pollable = ::fstat(in_fd, &st) == 0 && !S_ISREG(st.st_mode);
  if (!pollable) return std::make_unique<ThreadedStdioTransport>(ex, max_message_bytes, in_fd, out_fd);
  int in = ::dup(in_fd);
  int out = ::dup(out_fd);
  Descriptor in_d(ex, in);
  Descriptor out_d(ex, out);
  return std::make_unique<StreamTransport<Descriptor>>(std::move(in_d), std::move(out_d), max_message_bytes);
}

}  // namespace ghostd::server
