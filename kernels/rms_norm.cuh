// RMS normalization, one block per row: out = x * rsqrt(mean(x^2) + eps) * w.
#pragma once

#include <cuda_runtime_api.h>

#include "runtime/core/dtype.h"

namespace ghostd::kernels {

// x, out: [rows, dim] float; w: [dim] in `dtype`. out may alias x.
cudaError_t rms_norm(const float* x, const void* w, runtime::DType dtype, int rows, int dim,
                     float eps, float* out, cudaStream_t stream);
// Fused residual add: x += y (written back), then out = rms_norm(x) * w.
// Each block reads its row of x and y once; the sum is the float x + y that
// a separate add() would store, so values match add() then rms_norm().
cudaError_t add_rms_norm(float* x, const float* y, const void* w, runtime::DType dtype, int rows, int dim,
                         float eps, float* out, cudaStream_t stream);

}  // namespace ghostd::kernels

#ifdef __CUDACC__
#include "kernels/common.cuh"

namespace ghostd::kernels {

// The sum of squares is accumulated in double, as in the CPU reference, so
// the scale does not depend on the summation order; the rest is float and
// uses the reference's exact formula ((x * inv) * w).
template <class T>
__global__ void rms_norm_kernel(const float* x, const T* __restrict__ w, int dim, float eps,
                                float* out) {
  __shared__ double scratch[32];
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * dim;
  float* o = out + static_cast<int64_t>(blockIdx.x) * dim;
  double ss = 0;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += static_cast<double>(xr[i]) * xr[i];
  ss = block_sum(ss, scratch);
  const float inv = 1.0f / sqrtf(static_cast<float>(ss / dim) + eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = (xr[i] * inv) * to_float(w[i]);
}

template <class T>
__global__ void add_rms_norm_kernel(float* x, const float* __restrict__ y, const T* __restrict__ w, int dim,
                                    float eps, float* out) {
  __shared__ double scratch[32];
  float* xr = x + static_cast<int64_t>(blockIdx.x) * dim;
  const float* yr = y + static_cast<int64_t>(blockIdx.x) * dim;
  float* o = out + static_cast<int64_t>(blockIdx.x) * dim;
  double ss = 0;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    const float s = xr[i] + yr[i];
    xr[i] = s;  // each thread rereads only the elements it wrote
    ss += static_cast<double>(s) * s;
  }
  ss = block_sum(ss, scratch);
  const float inv = 1.0f / sqrtf(static_cast<float>(ss / dim) + eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = (xr[i] * inv) * to_float(w[i]);
}

}  // namespace ghostd::kernels
#endif
