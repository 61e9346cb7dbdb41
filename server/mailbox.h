// Lets other threads (engine, loader, stdin reader) post work to an executor
// that may be gone: posting after close() is a no-op instead of a use of a
// destroyed io_context.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/post.hpp>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

namespace ghostd::server {

// Thread-safety: thread-safe.
class Mailbox {
 public:
  explicit Mailbox(asio::any_io_executor ex) : ex_(std::move(ex)) {}

  // Returns false when the mailbox is closed and `fn` was dropped.
  template <class Fn>
  bool post(Fn&& fn) {
    std::lock_guard lock(mu_);
    if (!ex_) return false;
    asio::post(*ex_, std::forward<Fn>(fn));
    return true;
  }
  void close() {
    std::lock_guard lock(mu_);
    ex_.reset();
  }

 private:
  std::mutex mu_;
  std::optional<asio::any_io_executor> ex_;
};

}  // namespace ghostd::server
