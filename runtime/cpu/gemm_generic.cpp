#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "runtime/cpu/gemm.h"
#include "runtime/cpu/row_ops.h"

namespace ghostd::runtime::cpu {

namespace {

// Weight row n as floats (block types unpacked block by block into this one
// row of scratch; the tensor itself is never converted).
inline void load_row(const Weight& w, int64_t n, float* dst) {
  const auto* base = static_cast<const unsigned char*>(w.data);
  dequantize_row(w.dtype, base + static_cast<size_t>(n) * dtype_bytes(w.dtype, w.cols), dst, w.cols);
}

}  // namespace

float dot_generic(const float* a, const float* b, int n) {
  float acc[8] = {};
  int k = 0;
  for (; k + 8 <= n; k += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[k + j] * b[k + j];
  float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (; k < n; ++k) s += a[k] * b[k];
  return s;
}

void axpy_generic(float a, const float* x, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] += a * x[i];
}

void span_scores_generic(const float* q, int heads, const float* base, const int64_t* rows, int count, int n,
                         float* out, int64_t out_stride) {
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < count; ++i) out[h * out_stride + i] = dot_generic(q + h * n, base + rows[i], n);
}

void span_values_generic(const float* w, int64_t w_stride, int heads, const float* base, const int64_t* rows,
                         int count, int n, float* o, int64_t o_stride) {
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < count; ++i) axpy_generic(w[h * w_stride + i], base + rows[i], o + h * o_stride, n);
}

void span_softmax_generic(float* s, int count, float scale, float* max_out, float* sum_out) {
  float mx = -INFINITY;
  for (int i = 0; i < count; ++i) mx = std::max(mx, s[i] *= scale);
  float sum = 0;
  for (int i = 0; i < count; ++i) sum += (s[i] = std::exp(s[i] - mx));
  *max_out = mx;
  *sum_out = sum;
}

void act_generic(GluAct act, const float* g, const float* u, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float a = act == GluAct::kSilu ? silu(g[i]) : gelu_tanh(g[i]);
    out[i] = u != nullptr ? a * u[i] : a;
  }
}

void gemm_generic(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end,
                  float* out, int64_t out_stride) {
  const int cols = static_cast<int>(w.cols);
  float* row = static_cast<float*>(std::malloc(sizeof(float) * cols));
  for (int64_t n = n_begin; n < n_end; ++n) {
    load_row(w, n, row);
    for (int r = 0; r < rows; ++r) out[r * out_stride + n] = dot_generic(x + static_cast<int64_t>(r) * cols, row, cols);
  }
  std::free(row);
}

Kernels select_kernels() {
  const char* env = std::getenv("GHOSTD_CPU_ISA");
  std::string_view want = env ? env : "";
  bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  // Every CPU with AVX2 and FMA has F16C (clang 14 cannot test "f16c" here).
  bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  // K-quants in integers by default: their weights' own rounding (4-6 bits)
  // dwarfs x's 8 bits, and the float path is compute-bound on them (docs/
  // benchmarks.md); GHOSTD_CPU_KQUANT=float keeps float32 activations.
  // The 32-value block types likewise (x rounded per 32 values as ggml's
  // Q8_0): Q8_0 1.2-1.4x the decode speed of float, and 1.4x the prefill
  // with AVX512-VNNI (about even without); GHOSTD_CPU_BLOCK32=float keeps
  // float32 activations.
  auto mode = [](const char* name, bool fallback) {
    const char* v = std::getenv(name);
    if (v == nullptr) return fallback;
    const std::string_view s = v;
    if (s != "float" && s != "int8")
      spdlog::warn("{}={}: expected float or int8; {} is used", name, s, fallback ? "int8" : "float");
    return s == "int8" || (s != "float" && fallback);
  };
  if (want == "generic" || (!avx2 && !avx512))
    return {gemm_generic, span_scores_generic, span_values_generic, "generic", false};
  const bool use512 = want != "avx2" && avx512 && avx2;
  const bool vnni = use512 && __builtin_cpu_supports("avx512vnni");
  const bool int8 = mode("GHOSTD_CPU_KQUANT", true), b32 = mode("GHOSTD_CPU_BLOCK32", true), any = int8 || b32;
  if (!use512)
    return {int8 ? gemm_avx2_k8 : gemm_avx2, span_scores_avx2, span_values_avx2, "avx2", int8,
            any ? quantize_q8_avx2 : nullptr, any ? gemm_q8_avx2 : nullptr, b32, false, act_avx2, span_softmax_avx2};
  return {int8 ? gemm_avx512_k8 : gemm_avx512, span_scores_avx2, span_values_avx2, "avx512", int8,
          any ? quantize_q8_avx2 : nullptr, any ? (vnni ? gemm_q8_avx512vnni : gemm_q8_avx512) : nullptr, b32,
          any && vnni, act_avx2, span_softmax_avx2};
}

}  // namespace ghostd::runtime::cpu
