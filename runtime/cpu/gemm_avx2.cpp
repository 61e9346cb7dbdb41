// AVX2/FMA/F16C kernels (this file is compiled with -mavx2 -mfma -mf16c and
// only called after a CPU check): the shared direct-conversion GEMM
// (gemm_direct.h) on 8-lane vectors, dot, axpy and the attention span passes.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "runtime/cpu/gemm.h"
#include "runtime/cpu/gemm_direct.h"

namespace ghostd::runtime::cpu {

namespace {

inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

struct Avx2 {
  using Vec = __m256;
  static constexpr int kWidth = 8;
  // Passes of up to 6 x rows; R x N chains in 16 ymm registers
  // (R * N + N + 1 <= 16): 4 weight rows per tile up to 2 rows, 3 up to 4,
  // 2 above. 6 x 2 converts a weight vector per 6 FMAs where 4 x 3 did per
  // 4: a 64-row product 69-70 -> 77-82 GFLOP/s on an AMD EPYC (bench_cpu_gemm,
  // GHOSTD_CPU_ISA=avx2, Q8_0, one thread).
  static constexpr int kPassRows = 6;
  static constexpr int tile_n(int rows) { return rows <= 2 ? 4 : rows <= 4 ? 3 : 2; }

  static Vec zero() { return _mm256_setzero_ps(); }
  static Vec set1(float v) { return _mm256_set1_ps(v); }
  static Vec loadu(const float* p) { return _mm256_loadu_ps(p); }
  static Vec fmadd(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
  static float reduce(Vec v) { return hsum(v); }
  template <DType D>
  static Vec weights(const void* row, int k) {
    static_assert(D == DType::kF32 || D == DType::kBF16 || D == DType::kF16);
    if constexpr (D == DType::kF32) {
      return _mm256_loadu_ps(static_cast<const float*>(row) + k);
    } else {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + k));
      if constexpr (D == DType::kBF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
      else return _mm256_cvtph_ps(h);
    }
  }
  static Vec unpacked(const float* p) { return _mm256_load_ps(p); }
  static Vec q8(Vec d, const uint8_t* q) {
    return _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q)))));
  }
};

}  // namespace

void gemm_avx2(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end,
               float* out, int64_t out_stride) {
  gemm_dispatch<Avx2>(x, rows, w, n_begin, n_end, out, out_stride);
}

void gemm_avx2_k8(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end, float* out,
                      int64_t out_stride) {
  gemm_dispatch<Avx2, true>(x, rows, w, n_begin, n_end, out, out_stride);
}

bool gemm_q8_avx2(const Q8Rows& xq, const Weight& w, int64_t n_begin, int64_t n_end, float* out, int64_t out_stride) {
  return gemm_q8_dispatch(xq, w, n_begin, n_end, out, out_stride);
}

void quantize_q8_avx2(const float* x, int r_begin, int r_end, Q8Rows& xq) {
  if (xq.per256) quantize_rows_q8(x, r_begin, r_end, xq);
  if (xq.per32) quantize_rows_q8_32(x, r_begin, r_end, xq);
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

void span_scores_avx2(const float* q, const float* base, const int64_t* rows, int count, int n, float* out) {
  int i = 0;
  if (n % 16 == 0) {
    // dot_avx2's two chains per row (lanes k and k + 8), for four rows at once.
    for (; i + 4 <= count; i += 4) {
      const float* r[4] = {base + rows[i], base + rows[i + 1], base + rows[i + 2], base + rows[i + 3]};
      __m256 a0[4], a1[4];
      for (int j = 0; j < 4; ++j) a0[j] = a1[j] = _mm256_setzero_ps();
      for (int k = 0; k < n; k += 16) {
        const __m256 qa = _mm256_loadu_ps(q + k), qb = _mm256_loadu_ps(q + k + 8);
        for (int j = 0; j < 4; ++j) {
          a0[j] = _mm256_fmadd_ps(qa, _mm256_loadu_ps(r[j] + k), a0[j]);
          a1[j] = _mm256_fmadd_ps(qb, _mm256_loadu_ps(r[j] + k + 8), a1[j]);
        }
      }
      for (int j = 0; j < 4; ++j) out[i + j] = hsum(_mm256_add_ps(a0[j], a1[j]));
    }
  }
  for (; i < count; ++i) out[i] = dot_avx2(q, base + rows[i], n);
}

namespace {

// o[0, 8 * M) over every row, held in M registers.
template <int M>
void values_chunk(const float* w, const float* base, const int64_t* rows, int count, float* o) {
  __m256 acc[M];
  for (int j = 0; j < M; ++j) acc[j] = _mm256_loadu_ps(o + 8 * j);
  for (int i = 0; i < count; ++i) {
    const __m256 a = _mm256_set1_ps(w[i]);
    const float* v = base + rows[i];
    for (int j = 0; j < M; ++j) acc[j] = _mm256_fmadd_ps(a, _mm256_loadu_ps(v + 8 * j), acc[j]);
  }
  for (int j = 0; j < M; ++j) _mm256_storeu_ps(o + 8 * j, acc[j]);
}

}  // namespace

void span_values_avx2(const float* w, const float* base, const int64_t* rows, int count, int n, float* o) {
  if (n % 8 != 0) {
    for (int i = 0; i < count; ++i) axpy_avx2(w[i], base + rows[i], o, n);
    return;
  }
  // axpy_avx2's FMA per lane and row, in row order, 64 lanes at a time.
  for (int c = 0; c < n; c += 64) {
    const float* b = base + c;
    float* oc = o + c;
    switch (std::min(64, n - c) / 8) {
      case 8: values_chunk<8>(w, b, rows, count, oc); break;
      case 7: values_chunk<7>(w, b, rows, count, oc); break;
      case 6: values_chunk<6>(w, b, rows, count, oc); break;
      case 5: values_chunk<5>(w, b, rows, count, oc); break;
      case 4: values_chunk<4>(w, b, rows, count, oc); break;
      case 3: values_chunk<3>(w, b, rows, count, oc); break;
      case 2: values_chunk<2>(w, b, rows, count, oc); break;
      default: values_chunk<1>(w, b, rows, count, oc); break;
    }
  }
}

}  // namespace ghostd::runtime::cpu
