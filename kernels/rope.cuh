// Rotary position embedding with rotate_half pairing (i with i + head_dim/2).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace ghostd::kernels {

// In place on x: [rows, n_heads * head_dim]; inv_freq: [head_dim / 2].
cudaError_t rope(float* x, int rows, int n_heads, int head_dim, const int32_t* positions,
                 const float* inv_freq, cudaStream_t stream);
// Fused: RoPE on each token's q heads and k heads in place, then its k and v
// rows to KV slot slots[t] of the pools; one block per token. Values match
// rope(q), rope(k) and kv_store().
cudaError_t rope_store_kv(float* q, float* k, const float* v, int rows, int n_heads, int n_kv_heads, int head_dim,
                          const int32_t* positions, const float* inv_freq, const int32_t* slots, float* k_pool,
                          float* v_pool, cudaStream_t stream);

}  // namespace ghostd::kernels

#ifdef __CUDACC__
#include "kernels/common.cuh"

namespace ghostd::kernels {

// One block per row; each thread owns pair i of some heads. The angle is
// float32 position * inv_freq (as HF and the CPU reference), and sincosf is
// the accurate (non fast-math) one.
template <class T = float>
__global__ void rope_kernel(T* x, int n_heads, int head_dim, const int32_t* __restrict__ positions,
                            const float* __restrict__ inv_freq) {
  const int half = head_dim / 2;
  const float pos = static_cast<float>(positions[blockIdx.x]);
  T* row = x + static_cast<int64_t>(blockIdx.x) * n_heads * head_dim;
  for (int j = threadIdx.x; j < n_heads * half; j += blockDim.x) {
    const int h = j / half, i = j % half;
    float sn, cs;
    sincosf(pos * inv_freq[i], &sn, &cs);
    T* v = row + h * head_dim;
    const float a = v[i], b = v[i + half];
    v[i] = a * cs - b * sn;
    v[i + half] = b * cs + a * sn;
  }
}

__global__ void rope_store_kv_kernel(float* q, float* k, const float* __restrict__ v, int n_heads, int n_kv_heads,
                                     int head_dim, const int32_t* __restrict__ positions,
                                     const float* __restrict__ inv_freq, const int32_t* __restrict__ slots,
                                     float* __restrict__ k_pool, float* __restrict__ v_pool) {
  const int half = head_dim / 2;
  const float pos = static_cast<float>(positions[blockIdx.x]);
  const int64_t kv_dim = static_cast<int64_t>(n_kv_heads) * head_dim;
  float* qrow = q + static_cast<int64_t>(blockIdx.x) * n_heads * head_dim;
  float* krow = k + static_cast<int64_t>(blockIdx.x) * kv_dim;
  const float* vrow = v + static_cast<int64_t>(blockIdx.x) * kv_dim;
  float* kdst = k_pool + static_cast<int64_t>(slots[blockIdx.x]) * kv_dim;
  float* vdst = v_pool + static_cast<int64_t>(slots[blockIdx.x]) * kv_dim;
  // Pairs of the q heads, then of the k heads (the k pairs are also stored).
  for (int j = threadIdx.x; j < (n_heads + n_kv_heads) * half; j += blockDim.x) {
    const bool is_k = j >= n_heads * half;
    const int jj = is_k ? j - n_heads * half : j;
    const int h = jj / half, i = jj % half;
    float sn, cs;
    sincosf(pos * inv_freq[i], &sn, &cs);
    float* x = (is_k ? krow : qrow) + h * head_dim;
    const float a = x[i], b = x[i + half];
    const float lo = a * cs - b * sn, hi = b * cs + a * sn;
    x[i] = lo;
    x[i + half] = hi;
    if (is_k) {
      kdst[h * head_dim + i] = lo;
      kdst[h * head_dim + i + half] = hi;
    }
  }
  for (int c = threadIdx.x; c < kv_dim; c += blockDim.x) vdst[c] = vrow[c];
}

}  // namespace ghostd::kernels
#endif
