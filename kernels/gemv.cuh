// Small-batch matrix product for decode: out[r, n] = dot(x[r, :], w[n, :])
// for up to kGemvMaxRows rows, with float activations and weights in their
// stored dtype. Memory bound: one warp streams one weight row with 16-byte
// loads and reuses it for every activation row.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "runtime/core/dtype.h"

namespace ghostd::kernels {

inline constexpr int kGemvMaxRows = 8;

// x: [rows, k] float, w: [n, k] in `dtype`, out: [rows, n] float; `bias`
// ([n] in `bias_dtype`, F32/F16/BF16) is added when not null.
// cudaErrorNotSupported (nothing launched) when rows > kGemvMaxRows, k is not
// a multiple of 8 or a pointer is not 16-byte aligned: use the GEMM path.
cudaError_t gemv(const float* x, int rows, const void* w, runtime::DType dtype, int64_t n, int k,
                 const void* bias, runtime::DType bias_dtype, float* out, cudaStream_t stream);

// The same for any number of rows: chunks of kGemvMaxRows rows (and one of
// the rest), each row computed exactly as gemv computes a lone row. The
// batch-invariant path for F32 weights (and all dtypes under
// GHOSTD_CUDA_LINEAR=gemv); compute-bound and slow for long prompts.
cudaError_t gemv_rows(const float* x, int rows, const void* w, runtime::DType dtype, int64_t n,
                      int k, const void* bias, runtime::DType bias_dtype, float* out,
                      cudaStream_t stream);

}  // namespace ghostd::kernels

#ifdef __CUDACC__
#include "kernels/common.cuh"

namespace ghostd::kernels {

// Unpacks one 16-byte load of weights into floats.
__device__ __forceinline__ void unpack16(const uint4& u, float (&f)[4]) {
  f[0] = __uint_as_float(u.x);
  f[1] = __uint_as_float(u.y);
  f[2] = __uint_as_float(u.z);
  f[3] = __uint_as_float(u.w);
}
__device__ __forceinline__ void unpack16(const uint4& u, float (&f)[8], __nv_bfloat16) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}
__device__ __forceinline__ void unpack16(const uint4& u, float (&f)[8], __half) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    __half2 h = *reinterpret_cast<const __half2*>(&w[i]);
    float2 v = __half22float2(h);
    f[2 * i] = v.x;
    f[2 * i + 1] = v.y;
  }
}

// Element i of a vector whose dtype is only known at run time (epilogues).
__device__ __forceinline__ float load_as_float(const void* p, runtime::DType d, int64_t i) {
  switch (d) {
    case runtime::DType::kF16:
      return __half2float(static_cast<const __half*>(p)[i]);
    case runtime::DType::kBF16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    default:
      return static_cast<const float*>(p)[i];
  }
}

template <class T, int R>
__global__ void gemv_kernel(const float* __restrict__ x, const T* __restrict__ w, int64_t n_out,
                            int k, const void* __restrict__ bias, runtime::DType bias_dtype,
                            float* __restrict__ out) {
  constexpr int V = 16 / sizeof(T);  // weights per 16-byte load
  const int lane = threadIdx.x % kWarp;
  x += static_cast<int64_t>(blockIdx.y) * R * k;  // gemv_rows: R rows per grid row
  out += static_cast<int64_t>(blockIdx.y) * R * n_out;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (n >= n_out) return;
  const T* wr = w + n * k;
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.0f;
#pragma unroll 4
  for (int c = lane * V; c < k; c += kWarp * V) {
    const uint4 raw = __ldg(reinterpret_cast<const uint4*>(wr + c));
    float wf[V];
    if constexpr (V == 4)
      unpack16(raw, wf);
    else
      unpack16(raw, wf, T{});
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const float4* xr = reinterpret_cast<const float4*>(x + static_cast<int64_t>(r) * k + c);
#pragma unroll
      for (int q = 0; q < V / 4; ++q) {
        const float4 xv = __ldg(xr + q);
        acc[r] = fmaf(wf[4 * q], xv.x, acc[r]);
        acc[r] = fmaf(wf[4 * q + 1], xv.y, acc[r]);
        acc[r] = fmaf(wf[4 * q + 2], xv.z, acc[r]);
        acc[r] = fmaf(wf[4 * q + 3], xv.w, acc[r]);
      }
    }
  }
  // The bias is added after the sum, as the CPU reference does.
  const float b = bias != nullptr && lane == 0 ? load_as_float(bias, bias_dtype, n) : 0.0f;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const float s = warp_sum(acc[r]);
    if (lane == 0) out[static_cast<int64_t>(r) * n_out + n] = bias != nullptr ? s + b : s;
  }
}

}  // namespace ghostd::kernels
#endif
