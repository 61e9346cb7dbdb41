// Rotary position embedding with rotate_half pairing (i with i + head_dim/2).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace ghostd::kernels {

// In place on x: [rows, n_heads * head_dim]; inv_freq: [head_dim / 2].
cudaError_t rope(float* x, int rows, int n_heads, int head_dim, const int32_t* positions,
                 const float* inv_freq, cudaStream_t stream);

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

}  // namespace ghostd::kernels
#endif
