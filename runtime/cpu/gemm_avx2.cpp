// AVX2/FMA/F16C kernels (this file is compiled with -mavx2 -mfma -mf16c and
// only called after a CPU check).
#include <immintrin.h>

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

// R rows of x against one weight row; every row uses the same operation
// order, so results do not depend on R.
struct Dot {
  // Block types: each block of the weight row is unpacked once into scratch
  // and used by all R rows; the accumulation order is the one below for every R.
  template <DType D, int R>
  static void block_rows(const float* x, int cols, const void* wrow, float* out, int64_t out_stride) {
    constexpr int kBe = static_cast<int>(dtype_block_elems(D));
    constexpr size_t kBb = dtype_block_bytes(D);
    alignas(32) float buf[kBe];
    __m256 acc0[R], acc1[R];
    for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm256_setzero_ps();
    const auto* blk = static_cast<const unsigned char*>(wrow);
    for (int k0 = 0; k0 < cols; k0 += kBe, blk += kBb) {
      unpack_block<D>(blk, buf);
      for (int k = 0; k < kBe; k += 16) {
        const __m256 w0 = _mm256_load_ps(buf + k), w1 = _mm256_load_ps(buf + k + 8);
        for (int r = 0; r < R; ++r) {
          const float* xr = x + static_cast<int64_t>(r) * cols + k0 + k;
          acc0[r] = _mm256_fmadd_ps(_mm256_loadu_ps(xr), w0, acc0[r]);
          acc1[r] = _mm256_fmadd_ps(_mm256_loadu_ps(xr + 8), w1, acc1[r]);
        }
      }
    }
    for (int r = 0; r < R; ++r) out[r * out_stride] = hsum(_mm256_add_ps(acc0[r], acc1[r]));
  }

  template <DType D, int R>
  static void rows(const float* x, int cols, const void* wrow, float* out, int64_t out_stride) {
    if constexpr (kUnpackBlocks<D>)
      block_rows<D, R>(x, cols, wrow, out, out_stride);
    else
      direct_rows<D, R>(x, cols, wrow, out, out_stride);
  }

  template <DType D, int R>
  static void direct_rows(const float* x, int cols, const void* wrow, float* out, int64_t out_stride) {
    __m256 acc0[R], acc1[R];
    for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm256_setzero_ps();
    int k = 0;
    for (; k + 16 <= cols; k += 16) {
      __m256 w0 = load8<D>(wrow, k), w1 = load8<D>(wrow, k + 8);
      for (int r = 0; r < R; ++r) {
        const float* xr = x + static_cast<int64_t>(r) * cols;
        acc0[r] = _mm256_fmadd_ps(_mm256_loadu_ps(xr + k), w0, acc0[r]);
        acc1[r] = _mm256_fmadd_ps(_mm256_loadu_ps(xr + k + 8), w1, acc1[r]);
      }
    }
    for (int r = 0; r < R; ++r) {
      const float* xr = x + static_cast<int64_t>(r) * cols;
      float s = hsum(_mm256_add_ps(acc0[r], acc1[r]));
      for (int kk = k; kk < cols; ++kk) s += xr[kk] * load1<D>(wrow, kk);
      out[r * out_stride] = s;
    }
  }
};

}  // namespace

void gemm_avx2(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end,
               float* out, int64_t out_stride) {
  gemm_dispatch<Dot>(x, rows, w, n_begin, n_end, out, out_stride);
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
