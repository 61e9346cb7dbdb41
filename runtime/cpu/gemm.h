// Matrix-vector/matrix-matrix products with weights in their stored dtype,
// one implementation per instruction set, picked once at run time.
//
// Exactness contract: for a given implementation, each output element is
// computed with the same operation order whatever the number of rows in the
// call and whatever the split of output columns across threads, so batching
// never changes a result bit (DESIGN.md invariant 6).
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/core/backend.h"

namespace ghostd::runtime::cpu {

// out[r * out_stride + n] = dot(x[r * cols ..], w row n) for r < rows and
// n in [n_begin, n_end). Bias is added by the caller.
using GemmFn = void (*)(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end,
                        float* out, int64_t out_stride);

void gemm_generic(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end,
                  float* out, int64_t out_stride);
void gemm_avx2(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end,
               float* out, int64_t out_stride);
void gemm_avx512(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end,
                 float* out, int64_t out_stride);
// The same with Q4_K, Q5_K and Q6_K in integers, x quantized to 8 bits per 256
// values (gemm_kquant_int8.h; the default, GHOSTD_CPU_KQUANT=int8): batch-invariant too,
// but no longer within float32 rounding of the dequantized weights.
void gemm_avx2_k8(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end,
                  float* out, int64_t out_stride);
void gemm_avx512_k8(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end,
                    float* out, int64_t out_stride);

// x rows rounded to 8 bits for the integer kernels, in the forms resize asks
// for. Per 256 values (the K-quants, ggml's Q8_K): q[rows * cols] int8,
// d[rows * cols / 256] scales, and the sums of the quants of each 16 values
// (s16, for Q6_K's offset) and each 32 (s32, for the Q4_K/Q5_K mins), as
// int16 (at most 32 * 127) for madd. Per 32 values (Q8_0, ggml's Q8_0): q32,
// d32[rows * cols / 32], and c4, -128 times the sum of each 4 quants (the
// offset terms of gemm_block32_int8.h).
struct Q8Rows {
  std::vector<int8_t> q;
  std::vector<float> d;
  std::vector<int16_t> s16, s32;
  std::vector<int8_t> q32;
  std::vector<float> d32;
  std::vector<int32_t> c4;
  int rows = 0, cols = 0;
  bool per256 = false, per32 = false;  // the forms made (cols % 256 == 0, cols % 32 == 0)
  void resize(int r, int c, bool k256 = true, bool k32 = false) {
    rows = r;
    cols = c;
    per256 = k256;
    per32 = k32;
    const size_t n = static_cast<size_t>(r) * c;
    if (k256) {
      q.resize(n);
      d.resize(n / 256);
      s16.resize(n / 16);
      s32.resize(n / 32);
    }
    if (k32) {
      q32.resize(n);
      d32.resize(n / 32);
      c4.resize(n / 4);
    }
  }
};

// The integer path in two steps, so that a parallel product quantizes x
// once: rows [r_begin, r_end) of x into xq's forms (sized by resize; rows
// are independent, any split gives the same bytes), then weight rows
// [n_begin, n_end) against all of xq. The product returns false, doing
// nothing, for a dtype without an integer kernel or whose form of x xq lacks.
void quantize_q8_avx2(const float* x, int r_begin, int r_end, Q8Rows& xq);
bool gemm_q8_avx2(const Q8Rows& xq, const Weight& w, int64_t n_begin, int64_t n_end, float* out,
                  int64_t out_stride);
bool gemm_q8_avx512(const Q8Rows& xq, const Weight& w, int64_t n_begin, int64_t n_end, float* out,
                    int64_t out_stride);
// The same built with AVX512-VNNI (Q8_0 in 512-bit dpbusd; same bits).
bool gemm_q8_avx512vnni(const Q8Rows& xq, const Weight& w, int64_t n_begin, int64_t n_end, float* out,
                        int64_t out_stride);

// Dot product of two float vectors, and y[i] += a * x[i]: one KV row's step
// of attention, per ISA (the span passes below run them over many rows).
float dot_generic(const float* a, const float* b, int n);
float dot_avx2(const float* a, const float* b, int n);
void axpy_generic(float a, const float* x, float* y, int n);
void axpy_avx2(float a, const float* x, float* y, int n);

// An attention span's two passes over KV rows base + rows[i] (n floats
// each) for `heads` query heads that share them (a GQA group, or one head):
// out[h * out_stride + i] = dot(q + h * n, row i), and o[h * o_stride + j] +=
// w[h * w_stride + i] * row i [j] for i in order. Each result has the bits of
// the one-row dot or the axpy chain of the same ISA, whatever `heads`; the
// AVX2 versions read each row once for up to 6 heads, run several dots side
// by side (one row's dot is a chain of dependent FMAs) and keep o in
// registers across the rows (axpy stores and reloads it per row).
using SpanScoresFn = void (*)(const float* q, int heads, const float* base, const int64_t* rows, int count, int n,
                              float* out, int64_t out_stride);
using SpanValuesFn = void (*)(const float* w, int64_t w_stride, int heads, const float* base, const int64_t* rows,
                              int count, int n, float* o, int64_t o_stride);

void span_scores_generic(const float* q, int heads, const float* base, const int64_t* rows, int count, int n,
                         float* out, int64_t out_stride);
void span_scores_avx2(const float* q, int heads, const float* base, const int64_t* rows, int count, int n,
                      float* out, int64_t out_stride);
void span_values_generic(const float* w, int64_t w_stride, int heads, const float* base, const int64_t* rows,
                         int count, int n, float* o, int64_t o_stride);
void span_values_avx2(const float* w, int64_t w_stride, int heads, const float* base, const int64_t* rows, int count,
                      int n, float* o, int64_t o_stride);

// out[i] = act(g[i]) * u[i] (with u null, act(g[i])) for the gated MLP: SiLU
// or tanh-GELU. Elementwise: an element's bits do not depend on n or on where
// it falls in the call. The AVX2 version (a vector exp within 2 ulp, GELU as
// x * sigmoid(2y)) serves AVX-512 too; generic is row_ops.h's scalar math.
using ActFn = void (*)(GluAct act, const float* g, const float* u, int64_t n, float* out);
void act_generic(GluAct act, const float* g, const float* u, int64_t n, float* out);
void act_avx2(GluAct act, const float* g, const float* u, int64_t n, float* out);

// An attention span's softmax pieces over its scores: s[i] *= scale, then
// s[i] = e^(s[i] - max); the max and the sum of the exponentials out. Each
// result depends on the span's scores alone. The AVX2 version uses the
// vector exp and sums in 8 lanes; generic is std::exp, summed in order.
using SpanSoftmaxFn = void (*)(float* s, int count, float scale, float* max_out, float* sum_out);
void span_softmax_generic(float* s, int count, float scale, float* max_out, float* sum_out);
void span_softmax_avx2(float* s, int count, float scale, float* max_out, float* sum_out);

struct Kernels {
  GemmFn gemm;
  SpanScoresFn span_scores;
  SpanValuesFn span_values;
  const char* isa;
  bool int8_kquants;  // Q4_K, Q5_K and Q6_K in integers (unless GHOSTD_CPU_KQUANT=float)
  // With int8_kquants or int8_block32: the two steps of the integer path (null otherwise).
  void (*quantize_q8)(const float* x, int r_begin, int r_end, Q8Rows& xq) = nullptr;
  bool (*gemm_q8)(const Q8Rows& xq, const Weight& w, int64_t n_begin, int64_t n_end, float* out,
                  int64_t out_stride) = nullptr;
  bool int8_block32 = false;  // Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 in integers (unless GHOSTD_CPU_BLOCK32=float)
  bool vnni = false;       // gemm_q8 is the AVX512-VNNI build
  ActFn act = act_generic;
  SpanSoftmaxFn span_softmax = span_softmax_generic;
};

// The best kernels this CPU runs; GHOSTD_CPU_ISA=generic|avx2|avx512 overrides.
// Q4_K/Q5_K/Q6_K take the integer path (AVX2 and AVX-512 kernels) unless
// GHOSTD_CPU_KQUANT=float keeps them within float32 rounding; the 32-value
// block types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) likewise unless
// GHOSTD_CPU_BLOCK32=float.
Kernels select_kernels();

}  // namespace ghostd::runtime::cpu
