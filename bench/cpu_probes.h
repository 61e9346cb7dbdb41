// The machine's own limits, measured in the same run as the benchmark that
// quotes ratios to them: streaming read bandwidth and the FMA peak.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string_view>
#include <thread>
#include <vector>

#include "runtime/cpu/host_memory.h"

namespace ghostd::bench {

// GB/s of `threads` threads each reading their part of a buffer (far larger
// than the caches), summing 64-bit words so no pass is skipped; the best of
// `passes` per read pattern. Three patterns: the hardware prefetcher alone,
// and software prefetches 8 KiB ahead into L2 or into L1 (the CPU kernels
// prefetch too; on an AMD EPYC the prefetching reads gave 26-28 GB/s on one
// thread against 24-26 without, so a probe without them understated the
// machine). The buffer is on 2 MiB pages where the kernel grants them, as
// the CPU backend's weights are: the machine's limit. huge_pages = false
// reads malloc'd memory instead. The buffer is kept between measurements,
// so a benchmark can probe beside each of its repetitions: on a shared host
// the limit moves from one second to the next.
class ReadProbe {
 public:
  explicit ReadProbe(size_t bytes, bool huge_pages = true)
      : words_(bytes / sizeof(uint64_t)),
        region_(huge_pages ? words_ * sizeof(uint64_t) : 0),
        small_(huge_pages ? nullptr : new uint64_t[words_]) {
    buf_ = huge_pages ? static_cast<uint64_t*>(region_.data()) : small_.get();
    if (buf_ != nullptr)  // faults the pages in
      for (size_t i = 0; i < words_; ++i) buf_[i] = i * 0x9e3779b97f4a7c15ull;
  }

  // 0 when the buffer could not be had.
  double measure(int threads, int passes = 3) {
    if (buf_ == nullptr) return 0;
    const uint64_t* buf = buf_;
    const size_t words = words_;
    double best = 0;
    constexpr size_t kAhead = 8192 / sizeof(uint64_t);
    for (int p = 0; p < 3 * passes; ++p) {
      const int pattern = p % 3;  // 0: none, 1: L2, 2: L1
      std::vector<uint64_t> sums(static_cast<size_t>(threads));
      const auto t0 = std::chrono::steady_clock::now();
      std::vector<std::thread> pool;
      for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
          const size_t b = words * t / threads, e = words * (t + 1) / threads;
          uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
          size_t i = b;
          for (; i + 8 <= e; i += 8) {  // one 64-byte line per step
            const char* ahead = reinterpret_cast<const char*>(buf + std::min(i + kAhead, e - 1));
            if (pattern == 1) _mm_prefetch(ahead, _MM_HINT_T1);
            else if (pattern == 2) _mm_prefetch(ahead, _MM_HINT_T0);
            a0 += buf[i] + buf[i + 4];
            a1 += buf[i + 1] + buf[i + 5];
            a2 += buf[i + 2] + buf[i + 6];
            a3 += buf[i + 3] + buf[i + 7];
          }
          for (; i < e; ++i) a0 += buf[i];
          sums[static_cast<size_t>(t)] = a0 + a1 + a2 + a3;
        });
      }
      for (auto& th : pool) th.join();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      for (uint64_t v : sums) sink_ = sink_ + v;
      best = std::max(best, static_cast<double>(words * sizeof(uint64_t)) / s / 1e9);
    }
    return best;
  }

 private:
  size_t words_;
  ghostd::runtime::cpu::HostRegion region_;
  std::unique_ptr<uint64_t[]> small_;
  uint64_t* buf_ = nullptr;
  volatile uint64_t sink_ = 0;
};

inline double probe_read_bandwidth(int threads, size_t bytes, int passes = 3, bool huge_pages = true) {
  return ReadProbe(bytes, huge_pages).measure(threads, passes);
}

// The machine's CPU time so far (/proc/stat's first line, in clock ticks).
// On a virtual machine `steal` is time the host gave to someone else while
// this machine wanted to run: a benchmark's figures are only as good as the
// share of the CPU it was given.
struct HostCpuTimes {
  uint64_t steal = 0, total = 0;
  bool ok = false;
};

inline HostCpuTimes host_cpu_times() {
  HostCpuTimes t;
  FILE* f = std::fopen("/proc/stat", "r");
  if (f == nullptr) return t;
  unsigned long long v[8] = {};
  const int got = std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
                              &v[5], &v[6], &v[7]);
  std::fclose(f);
  if (got < 8) return t;
  for (unsigned long long x : v) t.total += x;
  t.steal = v[7];
  t.ok = true;
  return t;
}

namespace probe_detail {

// GCC 12 warns falsely inside its own AVX-512 headers (see CMakeLists.txt).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// Twelve independent FMA chains, each in its own named register (an array
// of accumulators may live in memory at -O2, which measures store
// forwarding instead): flops of `iters` rounds. The inputs come from memory
// so nothing folds.
#define GHOSTD_FMA12(FMA)                                                                                    \
  for (int64_t i = 0; i < iters; ++i) {                                                                      \
    c0 = FMA(c0, a, b); c1 = FMA(c1, a, b); c2 = FMA(c2, a, b); c3 = FMA(c3, a, b);                          \
    c4 = FMA(c4, a, b); c5 = FMA(c5, a, b); c6 = FMA(c6, a, b); c7 = FMA(c7, a, b);                          \
    c8 = FMA(c8, a, b); c9 = FMA(c9, a, b); c10 = FMA(c10, a, b); c11 = FMA(c11, a, b);                      \
  }

__attribute__((target("avx512f"))) inline double fma_avx512(int64_t iters, const float* in, float* out) {
  // Distinct starting values: equal chains would be merged into one.
  __m512 c0 = _mm512_set1_ps(in[0]), c1 = _mm512_set1_ps(in[1]), c2 = _mm512_set1_ps(in[2]),
         c3 = _mm512_set1_ps(in[3]), c4 = _mm512_set1_ps(in[4]), c5 = _mm512_set1_ps(in[5]),
         c6 = _mm512_set1_ps(in[6]), c7 = _mm512_set1_ps(in[7]), c8 = _mm512_set1_ps(in[8]),
         c9 = _mm512_set1_ps(in[9]), c10 = _mm512_set1_ps(in[10]), c11 = _mm512_set1_ps(in[11]);
  const __m512 a = _mm512_set1_ps(in[12]), b = _mm512_set1_ps(in[13]);
  GHOSTD_FMA12(_mm512_fmadd_ps)
  __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                           _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
  s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)));
  float lanes[16];
  _mm512_storeu_ps(lanes, s);
  out[0] = lanes[0] + lanes[15];
  return 2.0 * 16 * 12 * static_cast<double>(iters);
}

__attribute__((target("avx2,fma"))) inline double fma_avx2(int64_t iters, const float* in, float* out) {
  // Distinct starting values: equal chains would be merged into one.
  __m256 c0 = _mm256_set1_ps(in[0]), c1 = _mm256_set1_ps(in[1]), c2 = _mm256_set1_ps(in[2]),
         c3 = _mm256_set1_ps(in[3]), c4 = _mm256_set1_ps(in[4]), c5 = _mm256_set1_ps(in[5]),
         c6 = _mm256_set1_ps(in[6]), c7 = _mm256_set1_ps(in[7]), c8 = _mm256_set1_ps(in[8]),
         c9 = _mm256_set1_ps(in[9]), c10 = _mm256_set1_ps(in[10]), c11 = _mm256_set1_ps(in[11]);
  const __m256 a = _mm256_set1_ps(in[12]), b = _mm256_set1_ps(in[13]);
  GHOSTD_FMA12(_mm256_fmadd_ps)
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                           _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)));
  s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
  float lanes[8];
  _mm256_storeu_ps(lanes, s);
  out[0] = lanes[0] + lanes[7];
  return 2.0 * 8 * 12 * static_cast<double>(iters);
}

inline float scalar_fma(float c, float a, float b) { return c * a + b; }

inline double fma_scalar(int64_t iters, const float* in, float* out) {
  float c0 = in[0], c1 = in[1], c2 = in[2], c3 = in[3], c4 = in[4], c5 = in[5], c6 = in[6], c7 = in[7],
        c8 = in[8], c9 = in[9], c10 = in[10], c11 = in[11];
  const float a = in[12], b = in[13];
  GHOSTD_FMA12(scalar_fma)
  out[0] = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11;
  return 2.0 * 12 * static_cast<double>(iters);
}

#undef GHOSTD_FMA12

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace probe_detail

// GFLOP/s of float32 FMAs in the widest vectors of `isa` ("avx512", "avx2",
// else scalar), on `threads` threads at once; the best of three 50 ms runs.
inline double probe_fma_peak(std::string_view isa, int threads) {
  auto run = [&](int64_t iters, float* out) {
    static const float in[14] = {1.0f, 0.5f, 0.25f, 0.125f, 2.0f, 3.0f, 5.0f, 7.0f, 11.0f, 13.0f, 17.0f, 19.0f,
                                 0.999999f, 1e-7f};
    if (isa == "avx512") return probe_detail::fma_avx512(iters, in, out);
    if (isa == "avx2") return probe_detail::fma_avx2(iters, in, out);
    return probe_detail::fma_scalar(iters, in, out);
  };
  float sink[64] = {};
  int64_t iters = 1 << 16;
  for (;;) {  // calibrate to about 50 ms on one thread
    const auto t0 = std::chrono::steady_clock::now();
    run(iters, sink);
    if (std::chrono::steady_clock::now() - t0 > std::chrono::milliseconds(50) || iters > (int64_t{1} << 40)) break;
    iters *= 2;
  }
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    std::vector<double> flops(static_cast<size_t>(threads));
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] { flops[static_cast<size_t>(t)] = run(iters, sink + t % 64); });
    for (auto& th : pool) th.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double total = 0;
    for (double f : flops) total += f;
    best = std::max(best, total / s / 1e9);
  }
  return best;
}

}  // namespace ghostd::bench
