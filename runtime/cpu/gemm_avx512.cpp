// AVX-512 kernels (compiled with -mavx512f/bw/vl/dq; called after a CPU check).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "runtime/cpu/gemm.h"
#include "runtime/cpu/gemm_tiling.h"

namespace ghostd::runtime::cpu {

namespace {

template <DType D>
inline __m512 load16(const void* row, int k) {
  if constexpr (D == DType::kF32) {
    return _mm512_loadu_ps(static_cast<const float*>(row) + k);
  } else if constexpr (D == DType::kBF16) {
    __m256i h =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(row) + k));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  } else if constexpr (D == DType::kF16) {
    __m256i h =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(row) + k));
    return _mm512_cvtph_ps(h);
  } else {
    const uint8_t* blk = static_cast<const uint8_t*>(row) + (k / 32) * 34;
    uint16_t d16;
    std::memcpy(&d16, blk, 2);
    __m512 d = _mm512_set1_ps(_cvtsh_ss(d16));
    __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2 + (k % 32)));
    return _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)));
  }
}

inline __m512 load_2x8(const float* p) {
  return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_load_ps(p)), _mm256_load_ps(p + 8), 1);
}

// The AVX-512 operation order (see gemm.h): each output is one 16-lane
// accumulator over k in steps of 16, then _mm512_reduce_add_ps, then the
// scalar tail (cols % 16) in k order, whatever tile computes it. One
// accumulator per output (not two) lets a register tile hold 24 outputs.

// R x rows against N weight rows, the weights converted on the fly once for
// all R rows: R x N independent FMA chains, each weight vector feeding R
// FMAs and each x vector N.
template <DType D, int R, int N>
void direct_tile(const float* x, int cols, const void* const* wrows, float* out, int64_t out_stride) {
  __m512 acc[R][N];
  for (int r = 0; r < R; ++r)
    for (int n = 0; n < N; ++n) acc[r][n] = _mm512_setzero_ps();
  auto step = [&](const __m512 (&wv)[N], int k) {
    for (int r = 0; r < R; ++r) {
      const __m512 xv = _mm512_loadu_ps(x + static_cast<int64_t>(r) * cols + k);
      for (int n = 0; n < N; ++n) acc[r][n] = _mm512_fmadd_ps(xv, wv[n], acc[r][n]);
    }
  };
  // The N rows are read side by side, which the hardware prefetcher does not
  // follow on short rows (1.6 KB at hidden 1536: the 4-row tile read half
  // as fast as one row at a time); so every outer step also prefetches its
  // share of the next N rows, which follow these in memory (bench_cpu_gemm,
  // batch 1 from 1 GiB of weights: ~80% of the probed bandwidth).
  const char* next = static_cast<const char*>(wrows[N - 1]) + dtype_bytes(D, cols);
  auto prefetch = [&](int steps) {
    const size_t share = (static_cast<size_t>(N) * dtype_bytes(D, cols) / static_cast<size_t>(steps) + 63) / 64 * 64;
    return [&next, share] {
      for (size_t i = 0; i < share; i += 64) _mm_prefetch(next + i, _MM_HINT_T0);
      next += share;
    };
  };
  int kmain = cols / 16 * 16;
  if constexpr (kUnpackBlocks<D>) {
    constexpr int kBe = static_cast<int>(dtype_block_elems(D));
    constexpr size_t kBb = dtype_block_bytes(D);
    alignas(64) float buf[N][kBe];
    const auto ahead = prefetch(cols / kBe);
    for (int k0 = 0; k0 < cols; k0 += kBe) {
      ahead();
      for (int n = 0; n < N; ++n)
        unpack_block<D>(static_cast<const unsigned char*>(wrows[n]) + static_cast<size_t>(k0 / kBe) * kBb, buf[n]);
      for (int k = 0; k < kBe; k += 16) {
        // 256-bit loads matching the unpacker's 256-bit stores: a 512-bit load
        // spanning two fresh stores cannot be forwarded and stalls.
        __m512 wv[N];
        for (int n = 0; n < N; ++n) wv[n] = load_2x8(buf[n] + k);
        step(wv, k0 + k);
      }
    }
    kmain = cols;
  } else if constexpr (D == DType::kQ8_0) {
    // One scale per 32-value block, read once for its two steps.
    const auto ahead = prefetch(cols / 32);
    for (int k0 = 0; k0 < cols; k0 += 32) {
      ahead();
      __m512 d[N];
      const uint8_t* blk[N];
      for (int n = 0; n < N; ++n) {
        blk[n] = static_cast<const uint8_t*>(wrows[n]) + (k0 / 32) * 34;
        uint16_t d16;
        std::memcpy(&d16, blk[n], 2);
        d[n] = _mm512_set1_ps(_cvtsh_ss(d16));
      }
      for (int h = 0; h < 32; h += 16) {
        __m512 wv[N];
        for (int n = 0; n < N; ++n) {
          const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[n] + 2 + h));
          wv[n] = _mm512_mul_ps(d[n], _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)));
        }
        step(wv, k0 + h);
      }
    }
  } else {
    const auto ahead = prefetch(std::max(1, kmain / 16));
    for (int k = 0; k < kmain; k += 16) {
      ahead();
      __m512 wv[N];
      for (int n = 0; n < N; ++n) wv[n] = load16<D>(wrows[n], k);
      step(wv, k);
    }
  }
  for (int r = 0; r < R; ++r) {
    const float* xr = x + static_cast<int64_t>(r) * cols;
    for (int n = 0; n < N; ++n) {
      float s = _mm512_reduce_add_ps(acc[r][n]);
      for (int kk = kmain; kk < cols; ++kk) s += xr[kk] * load1<D>(wrows[n], kk);
      out[r * out_stride + n] = s;
    }
  }
}

// x rows times weight rows taken N at a time by direct_tile (at most 24
// accumulators), the last few one by one.
template <DType D, int R, int N>
void direct_rows(const float* x, const Weight& w, int64_t n_begin, int64_t n_end, float* out, int64_t out_stride) {
  const int cols = static_cast<int>(w.cols);
  int64_t n = n_begin;
  for (; n + N <= n_end; n += N) {
    const void* rows[N];
    for (int j = 0; j < N; ++j) rows[j] = row_ptr<D>(w, n + j);
    direct_tile<D, R, N>(x, cols, rows, out + n, out_stride);
  }
  for (; n < n_end; ++n) {
    const void* row = row_ptr<D>(w, n);
    direct_tile<D, R, 1>(x, cols, &row, out + n, out_stride);
  }
}

// Every row count takes the same tiles: passes of up to 8 x rows, each pass
// converting the weights on the fly once for all its rows. A converted-panel
// path (weights widened to float once per 24 rows, 4 x 6 tiles) measured
// slower at every row count on this VM's Zen 5 (bench_cpu_gemm, Q8_0, 512
// rows: 120-145 GFLOP/s against 136-155 on one thread, 180-193 against
// 199-238 on two): the conversion rides along in otherwise idle slots.
template <DType D>
void direct_pass(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end, float* out,
                 int64_t out_stride) {
  switch (rows) {
    case 1: return direct_rows<D, 1, 4>(x, w, n_begin, n_end, out, out_stride);
    case 2: return direct_rows<D, 2, 4>(x, w, n_begin, n_end, out, out_stride);
    case 3: return direct_rows<D, 3, 4>(x, w, n_begin, n_end, out, out_stride);
    case 4: return direct_rows<D, 4, 4>(x, w, n_begin, n_end, out, out_stride);
    case 5: return direct_rows<D, 5, 4>(x, w, n_begin, n_end, out, out_stride);
    case 6: return direct_rows<D, 6, 4>(x, w, n_begin, n_end, out, out_stride);
    case 7: return direct_rows<D, 7, 3>(x, w, n_begin, n_end, out, out_stride);
    default: return direct_rows<D, 8, 3>(x, w, n_begin, n_end, out, out_stride);
  }
}

// Blocked so that weights are read from memory about once per 64 x rows:
// for each block of 64 x rows, each group of 12 weight rows (a multiple of
// both tile widths) stays in L1/L2 while the block's passes of 8 rows use it.
template <DType D>
void gemm512(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end, float* out,
             int64_t out_stride) {
  constexpr int kBlockM = 64;
  constexpr int64_t kGroupN = 12;
  for (int m0 = 0; m0 < rows; m0 += kBlockM) {
    const int m1 = std::min(rows, m0 + kBlockM);
    for (int64_t n = n_begin; n < n_end; n += kGroupN) {
      const int64_t ne = std::min(n_end, n + kGroupN);
      for (int r = m0; r < m1; r += 8)
        direct_pass<D>(x + static_cast<int64_t>(r) * w.cols, std::min(8, m1 - r), w, n, ne, out + r * out_stride,
                       out_stride);
    }
  }
}

}  // namespace

void gemm_avx512(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end,
                 float* out, int64_t out_stride) {
  switch (w.dtype) {
    case DType::kF32: return gemm512<DType::kF32>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kBF16: return gemm512<DType::kBF16>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kF16: return gemm512<DType::kF16>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ8_0: return gemm512<DType::kQ8_0>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ4_0: return gemm512<DType::kQ4_0>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ4_1: return gemm512<DType::kQ4_1>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ5_0: return gemm512<DType::kQ5_0>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ5_1: return gemm512<DType::kQ5_1>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ5_K: return gemm512<DType::kQ5_K>(x, rows, w, n_begin, n_end, out, out_stride);
    // Q4_K and Q6_K keep their factored AVX2 kernels (one order for every R).
    case DType::kQ4_K: return gemm_q4k_avx2(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ6_K: return gemm_tiled<Q6kDot, DType::kQ6_K>(x, rows, w, n_begin, n_end, out, out_stride);
  }
}

}  // namespace ghostd::runtime::cpu
