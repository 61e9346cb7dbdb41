// LayerNorm with bias (StarCoder2), one block per row:
// out = ((x - mean) * rsqrt(var + eps)) * w + b, var the biased variance.
#pragma once

#include <cuda_runtime_api.h>

#include "runtime/core/dtype.h"

namespace ghostd::kernels {

// x, out: [rows, dim] float; w, b: [dim] in their dtypes. out may alias x.
cudaError_t layer_norm(const float* x, const void* w, runtime::DType w_dtype, const void* b, runtime::DType b_dtype,
                       int rows, int dim, float eps, float* out, cudaStream_t stream);
// Fused residual add: x += y (written back), then out = layer_norm(x); the
// same values as add() then layer_norm(). out may alias y.
cudaError_t add_layer_norm(float* x, const float* y, const void* w, runtime::DType w_dtype, const void* b,
                           runtime::DType b_dtype, int rows, int dim, float eps, float* out, cudaStream_t stream);

}  // namespace ghostd::kernels

#ifdef __CUDACC__
#include "kernels/common.cuh"

namespace ghostd::kernels {

// Mean and variance accumulated in double (two passes over the row), as in
// the CPU reference, so they do not depend on the summation order; the rest
// is the reference's float formula. With `y`, the row is x + y first,
// written back to x (each thread rereads only the elements it wrote).
template <class W, class B>
__global__ void layer_norm_kernel(float* x, const float* y, const W* __restrict__ w, const B* __restrict__ b,
                                  int dim, float eps, float* out) {
  __shared__ double scratch[32];
  float* xr = x + static_cast<int64_t>(blockIdx.x) * dim;
  float* o = out + static_cast<int64_t>(blockIdx.x) * dim;
  double sum = 0;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    if (y != nullptr) xr[i] += y[static_cast<int64_t>(blockIdx.x) * dim + i];
    sum += xr[i];
  }
  const double mean = block_sum(sum, scratch) / dim;
  double ss = 0;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += (xr[i] - mean) * (xr[i] - mean);
  ss = block_sum(ss, scratch);
  const float mf = static_cast<float>(mean);
  const float inv = 1.0f / sqrtf(static_cast<float>(ss / dim) + eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = ((xr[i] - mf) * inv) * to_float(w[i]) + to_float(b[i]);
}

}  // namespace ghostd::kernels
#endif
