// Prompt building off the event loop.
//
// Tokenizing a request's windows (a few KB of text through the BPE) is the
// costliest thing the server does per request. On the event loop it delays
// every other session's messages: one session keeping 48 completions in
// flight made each keystroke of the others wait behind 48 tokenizations.
// The pool builds prompts on its own threads and takes tasks round-robin
// across sessions, so a session's backlog delays its own requests only.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace ghostd::server {

// Thread-safety: submit() from any thread; tasks run on the pool's threads.
class PromptPool {
 public:
  // threads >= 1.
  explicit PromptPool(int threads);
  // Waits for the running tasks; queued ones are dropped (their sessions are
  // gone or going: the daemon is stopping).
  ~PromptPool();
  PromptPool(const PromptPool&) = delete;
  PromptPool& operator=(const PromptPool&) = delete;

  // Queues `task` behind the same session's earlier tasks.
  void submit(uint64_t session, std::function<void()> task);
  int threads() const { return static_cast<int>(workers_.size()); }
  // Tasks queued and not yet started (tests, metrics).
  size_t queued() const;

 private:
  void work();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, std::deque<std::function<void()>>> queues_;  // per session, none empty
  uint64_t cursor_ = 0;  // round robin: the next task comes from the first session >= cursor_
  size_t queued_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace ghostd::server
