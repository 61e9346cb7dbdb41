#include "runtime/cpu/thread_pool.h"

#include <algorithm>
#include <chrono>

namespace ghostd::runtime::cpu {

namespace {

// Chunk c of `chunks` equal parts of [0, n).
std::pair<int64_t, int64_t> chunk_range(int64_t n, int chunks, int c) {
  int64_t base = n / chunks, rem = n % chunks;
  int64_t begin = c * base + std::min<int64_t>(c, rem);
  return {begin, begin + base + (c < rem ? 1 : 0)};
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// How long an idle worker (or the waiting caller) spins before it sleeps:
// longer than the serial gaps between the regions of one step, short enough
// that an idle daemon does not burn a core.
constexpr auto kSpin = std::chrono::microseconds(200);

// Spins until `a` differs from `old`, then sleeps on it; returns the new value.
template <class T>
T await_change(const std::atomic<T>& a, T old) {
  T v = a.load(std::memory_order_acquire);
  if (v != old) return v;
  const auto until = std::chrono::steady_clock::now() + kSpin;
  for (int i = 1;; ++i) {
    cpu_relax();
    v = a.load(std::memory_order_acquire);
    if (v != old) return v;
    if (i % 64 == 0 && std::chrono::steady_clock::now() >= until) break;
  }
  for (;;) {
    a.wait(old, std::memory_order_acquire);
    v = a.load(std::memory_order_acquire);
    if (v != old) return v;
  }
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  n_threads = std::min<int>(n_threads, static_cast<int>(kChunkMask));
  for (int i = 1; i < n_threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_release);
  region_.fetch_add(uint64_t{1} << kChunkBits, std::memory_order_release);
  region_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;  // region_ starts at 0: a region published before this thread ran is still seen
  for (;;) {
    seen = await_change(region_, seen);
    if (stop_.load(std::memory_order_acquire)) return;
    const int chunks = static_cast<int>(seen & kChunkMask);
    if (index >= chunks) continue;  // not needed for this region
    auto [b, e] = chunk_range(job_n_, chunks, index);
    if (b < e) (*job_)(b, e);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain,
                              const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int64_t max_chunks = std::max<int64_t>(1, n / std::max<int64_t>(1, grain));
  const int chunks = static_cast<int>(std::min<int64_t>(size(), max_chunks));
  if (chunks <= 1) {
    fn(0, n);
    return;
  }
  job_ = &fn;
  job_n_ = n;
  pending_.store(chunks - 1, std::memory_order_relaxed);
  const uint64_t next = ((region_.load(std::memory_order_relaxed) >> kChunkBits) + 1) << kChunkBits;
  region_.store(next | static_cast<uint64_t>(chunks), std::memory_order_release);
  region_.notify_all();  // wakes sleepers; spinners see the store first
  auto [b, e] = chunk_range(n, chunks, 0);
  fn(b, e);
  for (int left = pending_.load(std::memory_order_acquire); left != 0;) left = await_change(pending_, left);
}

void ThreadPool::parallel_pieces(int64_t n, int64_t piece,
                                 const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  piece = std::max<int64_t>(1, piece);
  const int64_t pieces = (n + piece - 1) / piece;
  next_piece_.store(0, std::memory_order_relaxed);  // published to the workers by parallel_for's region
  // One pointer captured: the std::function keeps it inline (no allocation).
  struct Job {
    std::atomic<int64_t>& next;
    int64_t n, piece, pieces;
    const std::function<void(int64_t, int64_t)>& fn;
  } job{next_piece_, n, piece, pieces, fn};
  parallel_for(std::min<int64_t>(size(), pieces), 1, [&job](int64_t, int64_t) {
    for (int64_t i; (i = job.next.fetch_add(1, std::memory_order_relaxed)) < job.pieces;)
      job.fn(i * job.piece, std::min(job.n, (i + 1) * job.piece));
  });
}

}  // namespace ghostd::runtime::cpu
