// AVX2/FMA/F16C kernels (this file is compiled with -mavx2 -mfma -mf16c and
// only called after a CPU check).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "runtime/cpu/gemm.h"
#include "runtime/cpu/gemm_tiling.h"

namespace ghostd::runtime::cpu {

namespace {

inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

// Eight weights starting at element k of a row, as floats.
template <DType D>
inline __m256 load8(const void* row, int k) {
  if constexpr (D == DType::kF32) {
    return _mm256_loadu_ps(static_cast<const float*>(row) + k);
  } else if constexpr (D == DType::kBF16) {
    __m128i h =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + k));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else if constexpr (D == DType::kF16) {
    __m128i h =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + k));
    return _mm256_cvtph_ps(h);
  } else {
    // Q8_0: 34-byte blocks of an f16 scale and 32 int8 values.
    const uint8_t* blk = static_cast<const uint8_t*>(row) + (k / 32) * 34;
    uint16_t d16;
    std::memcpy(&d16, blk, 2);
    __m256 d = _mm256_set1_ps(_cvtsh_ss(d16));
    __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk + 2 + (k % 32)));
    return _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)));
  }
}

// The AVX2 operation order (see gemm.h): each output is one 8-lane
// accumulator over k in steps of 8, then hsum, then the scalar tail
// (cols % 8) in k order, whatever tile computes it.

// R x rows against N weight rows, the weights converted on the fly once for
// all R rows: R x N independent FMA chains in 16 ymm registers (R * N + N +
// 1 <= 16), each weight vector feeding R FMAs and each x vector N.
template <DType D, int R, int N>
void direct_tile(const float* x, int cols, const void* const* wrows, float* out, int64_t out_stride) {
  __m256 acc[R][N];
  for (int r = 0; r < R; ++r)
    for (int n = 0; n < N; ++n) acc[r][n] = _mm256_setzero_ps();
  auto step = [&](const __m256 (&wv)[N], int k) {
    for (int r = 0; r < R; ++r) {
      const __m256 xv = _mm256_loadu_ps(x + static_cast<int64_t>(r) * cols + k);
      for (int n = 0; n < N; ++n) acc[r][n] = _mm256_fmadd_ps(xv, wv[n], acc[r][n]);
    }
  };
  // The N rows are read side by side, which hardware prefetchers follow
  // poorly on short rows: every outer step also prefetches its share of the
  // next N rows, which follow these in memory (as the AVX-512 tile does).
  const char* next = static_cast<const char*>(wrows[N - 1]) + dtype_bytes(D, cols);
  auto prefetch = [&](int steps) {
    const size_t share = (static_cast<size_t>(N) * dtype_bytes(D, cols) / static_cast<size_t>(steps) + 63) / 64 * 64;
    return [&next, share] {
      for (size_t i = 0; i < share; i += 64) _mm_prefetch(next + i, _MM_HINT_T0);
      next += share;
    };
  };
  int kmain = cols / 8 * 8;
  if constexpr (kUnpackBlocks<D>) {
    constexpr int kBe = static_cast<int>(dtype_block_elems(D));
    constexpr size_t kBb = dtype_block_bytes(D);
    alignas(32) float buf[N][kBe];
    const auto ahead = prefetch(cols / kBe);
    for (int k0 = 0; k0 < cols; k0 += kBe) {
      ahead();
      for (int n = 0; n < N; ++n)
        unpack_block<D>(static_cast<const unsigned char*>(wrows[n]) + static_cast<size_t>(k0 / kBe) * kBb, buf[n]);
      for (int k = 0; k < kBe; k += 8) {
        __m256 wv[N];
        for (int n = 0; n < N; ++n) wv[n] = _mm256_load_ps(buf[n] + k);
        step(wv, k0 + k);
      }
    }
    kmain = cols;
  } else if constexpr (D == DType::kQ8_0) {
    // One scale per 32-value block, read once for its four steps.
    const auto ahead = prefetch(cols / 32);
    for (int k0 = 0; k0 < cols; k0 += 32) {
      ahead();
      __m256 d[N];
      const uint8_t* blk[N];
      for (int n = 0; n < N; ++n) {
        blk[n] = static_cast<const uint8_t*>(wrows[n]) + (k0 / 32) * 34;
        uint16_t d16;
        std::memcpy(&d16, blk[n], 2);
        d[n] = _mm256_set1_ps(_cvtsh_ss(d16));
      }
      for (int h = 0; h < 32; h += 8) {
        __m256 wv[N];
        for (int n = 0; n < N; ++n) {
          const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk[n] + 2 + h));
          wv[n] = _mm256_mul_ps(d[n], _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)));
        }
        step(wv, k0 + h);
      }
    }
  } else {
    const auto ahead = prefetch(std::max(1, kmain / 8));
    for (int k = 0; k < kmain; k += 8) {
      ahead();
      __m256 wv[N];
      for (int n = 0; n < N; ++n) wv[n] = load8<D>(wrows[n], k);
      step(wv, k);
    }
  }
  for (int r = 0; r < R; ++r) {
    const float* xr = x + static_cast<int64_t>(r) * cols;
    for (int n = 0; n < N; ++n) {
      float s = hsum(acc[r][n]);
      for (int kk = kmain; kk < cols; ++kk) s += xr[kk] * load1<D>(wrows[n], kk);
      out[r * out_stride + n] = s;
    }
  }
}

// x rows times weight rows taken N at a time by direct_tile, the last few
// one by one.
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

// Passes of up to 4 x rows, each converting the weights once for its rows.
template <DType D>
void direct_pass(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end, float* out,
                 int64_t out_stride) {
  switch (rows) {
    case 1: return direct_rows<D, 1, 4>(x, w, n_begin, n_end, out, out_stride);
    case 2: return direct_rows<D, 2, 4>(x, w, n_begin, n_end, out, out_stride);
    case 3: return direct_rows<D, 3, 3>(x, w, n_begin, n_end, out, out_stride);
    default: return direct_rows<D, 4, 3>(x, w, n_begin, n_end, out, out_stride);
  }
}

// Blocked so that weights are read from memory about once per 64 x rows:
// each group of 12 weight rows (a multiple of both tile widths) stays in
// L1/L2 while the block's passes of 4 rows use it.
template <DType D>
void gemm256(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end, float* out,
             int64_t out_stride) {
  constexpr int kBlockM = 64;
  constexpr int64_t kGroupN = 12;
  for (int m0 = 0; m0 < rows; m0 += kBlockM) {
    const int m1 = std::min(rows, m0 + kBlockM);
    for (int64_t n = n_begin; n < n_end; n += kGroupN) {
      const int64_t ne = std::min(n_end, n + kGroupN);
      for (int r = m0; r < m1; r += 4)
        direct_pass<D>(x + static_cast<int64_t>(r) * w.cols, std::min(4, m1 - r), w, n, ne, out + r * out_stride,
                       out_stride);
    }
  }
}

}  // namespace

void gemm_avx2(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end,
               float* out, int64_t out_stride) {
  switch (w.dtype) {
    case DType::kF32: return gemm256<DType::kF32>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kBF16: return gemm256<DType::kBF16>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kF16: return gemm256<DType::kF16>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ8_0: return gemm256<DType::kQ8_0>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ4_0: return gemm256<DType::kQ4_0>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ4_1: return gemm256<DType::kQ4_1>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ5_0: return gemm256<DType::kQ5_0>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ5_1: return gemm256<DType::kQ5_1>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ5_K: return gemm256<DType::kQ5_K>(x, rows, w, n_begin, n_end, out, out_stride);
    // Q4_K and Q6_K keep their factored kernels (one order for every R).
    case DType::kQ4_K: return gemm_q4k_avx2(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ6_K: return gemm_tiled<Q6kDot, DType::kQ6_K>(x, rows, w, n_begin, n_end, out, out_stride);
  }
}

float dot_avx2(const float* a, const float* b, int n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int k = 0;
  for (; k + 16 <= n; k += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 8), _mm256_loadu_ps(b + k + 8), acc1);
  }
  float s = hsum(_mm256_add_ps(acc0, acc1));
  for (; k < n; ++k) s += a[k] * b[k];
  return s;
}

void axpy_avx2(float a, const float* x, float* y, int n) {
  __m256 va = _mm256_set1_ps(a);
  int i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

}  // namespace ghostd::runtime::cpu
