// Shared pieces of the CUDA kernels: element loads from the stored weight
// dtypes, warp and block reductions, launch-size helpers. Included by .cu
// files only (device code).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace ghostd::kernels {

inline constexpr int kWarp = 32;

// Blocks for a grid-stride loop over n elements, capped so huge n does not
// make a huge grid.
inline unsigned grid_for(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > 65535) b = 65535;
  return static_cast<unsigned>(b);
}

// Element of a weight as float; T is float, __half or __nv_bfloat16.
__device__ __forceinline__ float to_float(float v) {
  return v;
}
__device__ __forceinline__ float to_float(__half v) {
  return __half2float(v);
}
__device__ __forceinline__ float to_float(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

// Round-to-nearest-even conversions from float (the activation casts).
template <class T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block; every thread gets the result. `scratch` holds one T
// per warp. blockDim.x must be a multiple of 32.
template <class T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int warps = blockDim.x / kWarp;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T total = lane < warps ? scratch[lane] : T(0);
  total = warp_sum(total);
  __syncthreads();  // scratch may be reused right after
  return total;
}

}  // namespace ghostd::kernels

#include "runtime/core/dtype.h"

namespace ghostd::kernels {

// Calls f(T{}) with T the device element type of a stored dtype (F32, F16,
// BF16); Q8_0 is dequantized at load and never reaches a kernel.
template <class F>
cudaError_t dispatch_dtype(runtime::DType dtype, F&& f) {
  switch (dtype) {
    case runtime::DType::kF32:
      return f(float{});
    case runtime::DType::kF16:
      return f(__half{});
    case runtime::DType::kBF16:
      return f(__nv_bfloat16{});
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace ghostd::kernels
