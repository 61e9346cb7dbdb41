// Per-row math of the CPU backend's light ops, shared by its files: each
// row (or element) computed the same way whatever the thread split.
#pragma once

#include <cmath>
#include <cstdint>

namespace ghostd::runtime::cpu {

// x * rsqrt(mean(x^2) + eps) * w for one row; the sum of squares in double
// so the norm does not depend on summation luck.
inline void norm_row(const float* xr, const float* weight, int dim, float eps, float* o) {
  double ss = 0;
  for (int i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
  const float inv = 1.0f / std::sqrt(static_cast<float>(ss / dim) + eps);
  for (int i = 0; i < dim; ++i) o[i] = (xr[i] * inv) * weight[i];
}

// Mean and biased variance in double (two passes), the rest in float with
// the same formula as the CUDA kernel: ((x - mean) * inv) * w + b.
inline void layer_norm_row(const float* xr, const float* weight, const float* bias, int dim, float eps,
                           float* o) {
  double sum = 0;
  for (int i = 0; i < dim; ++i) sum += xr[i];
  const double mean = sum / dim;
  double ss = 0;
  for (int i = 0; i < dim; ++i) ss += (xr[i] - mean) * (xr[i] - mean);
  const float mf = static_cast<float>(mean);
  const float inv = 1.0f / std::sqrt(static_cast<float>(ss / dim) + eps);
  for (int i = 0; i < dim; ++i) o[i] = ((xr[i] - mf) * inv) * weight[i] + bias[i];
}

// PyTorch's gelu(approximate="tanh") formula, in float.
inline float gelu_tanh(float x) {
  constexpr float kBeta = 0.7978845608028654f;  // sqrt(2 / pi)
  constexpr float kKappa = 0.044715f;
  return 0.5f * x * (1.0f + std::tanh(kBeta * (x + kKappa * x * x * x)));
}

// RoPE with rotate_half pairing on the heads of one row. HF computes the
// angle in float32: position * inv_freq. At most 256 pairs (head_dim 512).
inline void rope_row(float* row, int n_heads, int head_dim, int32_t position, const float* inv_freq) {
  const int half = head_dim / 2;
  float cs[256], sn[256];
  for (int i = 0; i < half; ++i) {
    const float angle = static_cast<float>(position) * inv_freq[i];
    cs[i] = std::cos(angle);
    sn[i] = std::sin(angle);
  }
  for (int h = 0; h < n_heads; ++h) {
    float* v = row + static_cast<int64_t>(h) * head_dim;
    for (int i = 0; i < half; ++i) {
      const float a = v[i], b = v[i + half];
      v[i] = a * cs[i] - b * sn[i];
      v[i + half] = b * cs[i] + a * sn[i];
    }
  }
}

inline float silu(float g) { return g / (1.0f + std::exp(-g)); }

}  // namespace ghostd::runtime::cpu
