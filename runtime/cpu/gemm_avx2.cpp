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

namespace {

// Scores of H heads (q + h * n) against R rows from i: per (head, row)
// dot_avx2's two chains (lanes k and k + 8, in steps of 16) and its sum. A
// GQA group's heads read each K row once (from L2: a span's 256 rows are
// 128 KiB at head size 128), where head by head they read it H times.
template <int H, int R>
void scores_tile(const float* q, const float* const* r, int n, float* out, int64_t out_stride) {
  // Chain (h, j)'s two halves at 2 (h R + j) and the next: one flat array
  // (GCC zeroed two-dimensional ones in memory with rep stos).
  __m256 a[2 * H * R];
  for (int i = 0; i < 2 * H * R; ++i) a[i] = _mm256_setzero_ps();
  int k = 0;
  do {  // n > 0: the chains stay in registers from their zeros to their sums
    __m256 ka[R], kb[R];
    for (int j = 0; j < R; ++j) {
      ka[j] = _mm256_loadu_ps(r[j] + k);
      kb[j] = _mm256_loadu_ps(r[j] + k + 8);
    }
    for (int h = 0; h < H; ++h) {
      const __m256 qa = _mm256_loadu_ps(q + h * n + k), qb = _mm256_loadu_ps(q + h * n + k + 8);
      for (int j = 0; j < R; ++j) {
        __m256* c = a + 2 * (h * R + j);
        c[0] = _mm256_fmadd_ps(qa, ka[j], c[0]);
        c[1] = _mm256_fmadd_ps(qb, kb[j], c[1]);
      }
    }
    k += 16;
  } while (k < n);
  for (int h = 0; h < H; ++h)
    for (int j = 0; j < R; ++j) {
      const __m256* c = a + 2 * (h * R + j);
      out[h * out_stride + j] = hsum(_mm256_add_ps(c[0], c[1]));
    }
}

// Every head over every row, R rows a step (the last rows R - 1 at a time),
// the heads K at a time on those rows (the later ones read them from L1).
// Registers: 2 K R chains and 2 R K vectors (with one head, its FMAs take
// them from memory): K = 3 at R = 2 (GCC kept 5 or 6 heads' chains in memory,
// zeroed with rep stos), R = 4 with one head.
template <int R, int K>
void scores_rows(const float* q, int heads, const float* base, const int64_t* rows, int count, int n, float* out,
                 int64_t out_stride) {
  int i = 0;
  for (; i + R <= count; i += R) {
    const float* r[R];
    for (int j = 0; j < R; ++j) r[j] = base + rows[i + j];
    int h = 0;
    for (; h + K <= heads; h += K) scores_tile<K, R>(q + h * n, r, n, out + h * out_stride + i, out_stride);
    if constexpr (K > 2)
      if (heads - h == 2) scores_tile<2, R>(q + h * n, r, n, out + h * out_stride + i, out_stride);
    if constexpr (K > 1)
      if (heads - h == 1) scores_tile<1, R>(q + h * n, r, n, out + h * out_stride + i, out_stride);
  }
  if constexpr (R > 1)
    if (i < count) scores_rows<R - 1, K>(q, heads, base, rows + i, count - i, n, out + i, out_stride);
}

// o[h][c, c + 8 M) of H heads over every row, held in H * M registers: per
// lane axpy_avx2's FMA, in row order. The heads share each V load.
template <int H, int M>
void values_tile(const float* w, int64_t w_stride, const float* base, const int64_t* rows, int count, int c,
                 float* o, int64_t o_stride) {
  __m256 acc[H][M];
  for (int h = 0; h < H; ++h)
    for (int j = 0; j < M; ++j) acc[h][j] = _mm256_loadu_ps(o + h * o_stride + c + 8 * j);
  for (int i = 0; i < count; ++i) {
    const float* v = base + rows[i] + c;
    __m256 vv[M];
    for (int j = 0; j < M; ++j) vv[j] = _mm256_loadu_ps(v + 8 * j);
    for (int h = 0; h < H; ++h) {
      const __m256 a = _mm256_set1_ps(w[h * w_stride + i]);
      for (int j = 0; j < M; ++j) acc[h][j] = _mm256_fmadd_ps(a, vv[j], acc[h][j]);
    }
  }
  for (int h = 0; h < H; ++h)
    for (int j = 0; j < M; ++j) _mm256_storeu_ps(o + h * o_stride + c + 8 * j, acc[h][j]);
}

template <int H, int M>
void values_heads(const float* w, int64_t w_stride, const float* base, const int64_t* rows, int count, int n, int c,
                  float* o, int64_t o_stride) {
  for (; c + 8 * M <= n; c += 8 * M) values_tile<H, M>(w, w_stride, base, rows, count, c, o, o_stride);
  if constexpr (M > 1)
    if (c < n) values_heads<H, M - 1>(w, w_stride, base, rows, count, n, c, o, o_stride);
}

// Heads in groups of up to 6.
template <int H>
void values_groups(const float* a, int64_t a_stride, int heads, const float* base, const int64_t* rows, int count,
                   int n, float* out, int64_t out_stride) {
  for (; heads >= H; heads -= H, a += H * a_stride, out += H * out_stride) {
    // Registers: H M accumulators and M V vectors (with one head, its FMAs
    // take them from memory) and a weight.
    values_heads<H, (H == 1 ? 8 : 15 / (H + 1))>(a, a_stride, base, rows, count, n, 0, out, out_stride);
  }
  if constexpr (H > 1)
    if (heads > 0) values_groups<H - 1>(a, a_stride, heads, base, rows, count, n, out, out_stride);
}

}  // namespace

void span_scores_avx2(const float* q, int heads, const float* base, const int64_t* rows, int count, int n,
                      float* out, int64_t out_stride) {
  if (n > 0 && n % 16 == 0) {
    if (heads == 1) return scores_rows<4, 1>(q, heads, base, rows, count, n, out, out_stride);
    return scores_rows<2, 3>(q, heads, base, rows, count, n, out, out_stride);
  }
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < count; ++i) out[h * out_stride + i] = dot_avx2(q + h * n, base + rows[i], n);
}

void span_values_avx2(const float* w, int64_t w_stride, int heads, const float* base, const int64_t* rows, int count,
                      int n, float* o, int64_t o_stride) {
  if (n % 8 == 0) return values_groups<6>(w, w_stride, heads, base, rows, count, n, o, o_stride);
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < count; ++i) axpy_avx2(w[h * w_stride + i], base + rows[i], o + h * o_stride, n);
}

}  // namespace ghostd::runtime::cpu
