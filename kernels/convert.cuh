// Dtype conversions on the device: float32 activations to the weight dtype
// (for cuBLAS) and Q8_0 weights to F16 at load time.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "runtime/core/dtype.h"

namespace ghostd::kernels {

// out[i] = dtype(x[i]), round to nearest even. dtype: F16 or BF16.
cudaError_t convert_activations(const float* x, int64_t n, runtime::DType dtype, void* out,
                                cudaStream_t stream);
// Q8_0 blocks (34 bytes: f16 scale, 32 int8) to n F16 values; n % 32 == 0.
cudaError_t dequantize_q8_0_to_f16(const void* blocks, int64_t n, void* out, cudaStream_t stream);

}  // namespace ghostd::kernels

#ifdef __CUDACC__
#include "kernels/common.cuh"

namespace ghostd::kernels {

template <class T>
__global__ void convert_kernel(const float* __restrict__ x, int64_t n, T* __restrict__ out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = from_float<T>(x[i]);
}

template <class T = __half>
__global__ void dequantize_q8_0_kernel(const uint8_t* __restrict__ blocks, int64_t n,
                                       T* __restrict__ out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const uint8_t* b = blocks + (i / 32) * 34;
    __half_raw raw;
    raw.x = static_cast<unsigned short>(b[0] | (b[1] << 8));
    const float d = __half2float(__half(raw));
    out[i] = from_float<T>(d * static_cast<float>(static_cast<int8_t>(b[2 + i % 32])));
  }
}

}  // namespace ghostd::kernels
#endif
