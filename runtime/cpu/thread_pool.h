// A fixed pool of worker threads for the data-parallel loops of the CPU
// backend. One forward step runs dozens of short parallel regions, so a
// region must not cost a wake-up per worker: workers spin briefly on the
// region counter before they sleep (std::atomic wait, a futex), the calling
// thread runs a chunk itself, and only as many workers take part as there
// are chunks.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace ghostd::runtime::cpu {

// Light ops (norms, activations, attention merges) run in parallel once a
// step is big enough to pay for a region: chunks of at least this many
// elements, or rows of `dim` elements.
inline constexpr int64_t kLightGrain = 16384;
inline int64_t row_grain(int64_t dim) { return dim >= kLightGrain ? 1 : kLightGrain / (dim > 0 ? dim : 1); }

// Thread-safety: parallel_for may be called from one thread at a time (the
// engine thread that owns the backend); workers only run the posted loop.
class ThreadPool {
 public:
  // n_threads <= 0 picks the number of hardware threads.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs fn(begin, end) over [0, n) split into contiguous chunks of at least
  // `grain` items, at most one chunk per thread; the caller runs chunk 0.
  // The split depends on n, grain and the thread count only.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

  // Runs fn(begin, end) over [0, n) in pieces of `piece` items (the last one
  // shorter) that the threads take in turn as they finish their last, so a
  // thread slowed down (a busier core, a slower stretch of memory) does less
  // of the work instead of making the others wait. Which thread runs a piece
  // varies from call to call: fn's result for an item must not depend on it.
  void parallel_pieces(int64_t n, int64_t piece, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void worker_loop(int index);

  // Region word: (region number << 16) | chunks, so a worker learns both in
  // one load and never reads the chunk count of a later region.
  static constexpr uint64_t kChunkBits = 16;
  static constexpr uint64_t kChunkMask = (uint64_t{1} << kChunkBits) - 1;

  std::vector<std::thread> workers_;
  std::atomic<uint64_t> region_{0};
  std::atomic<int> pending_{0};  // participating workers still running
  std::atomic<int64_t> next_piece_{0};  // parallel_pieces: the next piece to take
  std::atomic<bool> stop_{false};
  // Read by participating workers only, published by region_ (release).
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0;
};

}  // namespace ghostd::runtime::cpu
