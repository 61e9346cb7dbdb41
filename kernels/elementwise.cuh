// Elementwise and row-copy ops of the forward pass: embedding lookup,
// silu(gate) * up, GELU (tanh) and GeGLU, scaling, residual add, bias add
// and row gather.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "runtime/core/dtype.h"

namespace ghostd::kernels {

// out[i, :] = float(table[ids[i], :]); table: [*, dim] in `dtype`.
cudaError_t embedding(const void* table, runtime::DType dtype, const int32_t* ids, int n, int dim,
                      float* out, cudaStream_t stream);
// A vocabulary slice: out[i, :] = float(table[ids[i] - first_id, :]) when
// 0 <= ids[i] - first_id < rows, else zeros.
cudaError_t embedding_slice(const void* table, runtime::DType dtype, int64_t rows, const int32_t* ids, int n,
                            int dim, int64_t first_id, float* out, cudaStream_t stream);
// out = silu(gate) * up.
cudaError_t silu_mul(const float* gate, const float* up, int64_t n, float* out,
                     cudaStream_t stream);
// out = gelu_tanh(gate) * up (GeGLU); out may alias gate.
cudaError_t gelu_mul(const float* gate, const float* up, int64_t n, float* out, cudaStream_t stream);
// out = gelu_tanh(x); out may alias x.
cudaError_t gelu(const float* x, int64_t n, float* out, cudaStream_t stream);
// x *= s.
cudaError_t scale(float* x, float s, int64_t n, cudaStream_t stream);
// x += y.
cudaError_t add(float* x, const float* y, int64_t n, cudaStream_t stream);
// out[r, :] += float(bias[:]); out: [rows, n].
cudaError_t add_bias(float* out, const void* bias, runtime::DType dtype, int rows, int64_t n,
                     cudaStream_t stream);
// out[i, :] = x[rows[i], :].
cudaError_t gather_rows(const float* x, const int32_t* rows, int n, int dim, float* out,
                        cudaStream_t stream);

}  // namespace ghostd::kernels

#ifdef __CUDACC__
#include "kernels/common.cuh"

namespace ghostd::kernels {

template <class T>
__global__ void embedding_kernel(const T* __restrict__ table, const int32_t* __restrict__ ids,
                                 int dim, float* __restrict__ out) {
  const int64_t row = ids[blockIdx.x];
  const T* src = table + row * dim;
  float* dst = out + static_cast<int64_t>(blockIdx.x) * dim;
  for (int c = threadIdx.x; c < dim; c += blockDim.x) dst[c] = to_float(src[c]);
}

template <class T>
__global__ void embedding_slice_kernel(const T* __restrict__ table, int64_t rows, const int32_t* __restrict__ ids,
                                       int dim, int64_t first_id, float* __restrict__ out) {
  const int64_t row = static_cast<int64_t>(ids[blockIdx.x]) - first_id;
  float* dst = out + static_cast<int64_t>(blockIdx.x) * dim;
  const bool mine = row >= 0 && row < rows;
  for (int c = threadIdx.x; c < dim; c += blockDim.x) dst[c] = mine ? to_float(table[row * dim + c]) : 0.0f;
}

template <class T>
__global__ void add_bias_kernel(float* __restrict__ out, const T* __restrict__ bias, int64_t n,
                                int64_t total) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] += to_float(bias[i % n]);
}

// Same formula as the CPU reference: (g / (1 + exp(-g))) * up. out may
// alias gate (the model computes in place), hence no __restrict__.
template <class T = float>
__global__ void silu_mul_kernel(const T* gate, const T* up, int64_t n, T* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    out[i] = (g / (1.0f + expf(-g))) * up[i];
  }
}

// PyTorch's gelu(approximate="tanh") formula, as the CPU reference.
__device__ __forceinline__ float gelu_tanh(float x) {
  constexpr float kBeta = 0.7978845608028654f;  // sqrt(2 / pi)
  constexpr float kKappa = 0.044715f;
  return 0.5f * x * (1.0f + tanhf(kBeta * (x + kKappa * x * x * x)));
}

// up == nullptr: plain gelu. out may alias gate, hence no __restrict__.
template <class T = float>
__global__ void gelu_mul_kernel(const T* gate, const T* up, int64_t n, T* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float g = gelu_tanh(gate[i]);
    out[i] = up != nullptr ? g * up[i] : g;
  }
}

template <class T = float>
__global__ void scale_kernel(T* x, float s, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] *= s;
}

template <class T = float>
__global__ void add_kernel(T* __restrict__ x, const T* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] += y[i];
}

template <class T = float>
__global__ void gather_rows_kernel(const T* __restrict__ x, const int32_t* __restrict__ rows,
                                   int dim, T* __restrict__ out) {
  const T* src = x + static_cast<int64_t>(rows[blockIdx.x]) * dim;
  T* dst = out + static_cast<int64_t>(blockIdx.x) * dim;
  for (int c = threadIdx.x; c < dim; c += blockDim.x) dst[c] = src[c];
}

}  // namespace ghostd::kernels
#endif
