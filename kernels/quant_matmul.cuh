// Matrix products and embedding lookups on ggml's block-quantized weights
// (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K) as the GGUF file stores
// them: each value is decoded from its block where it is used, so the GPU
// holds the file's bytes and no dequantized copy.
//
// One warp per weight row; lane l takes the row's values l, l + 32, ... (32
// consecutive values per step: one legacy block or one K-quant sub-block) and
// each output is a warp sum, so every output has one fixed reduction order
// whatever the number of activation rows in the launch (batch invariant).
// Values are decoded with ggml's rounding steps (no fused multiply-add), as
// runtime/core/quant_blocks.h does on the CPU.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "runtime/core/dtype.h"

namespace ghostd::kernels {

// True for the block types these kernels take.
bool quant_matmul_supports(runtime::DType dtype);

// out[r, j] = dot(x[r, :], w[j, :]) (+ bias[j]); x: [rows, k] float, w: n rows
// of k values in `dtype` blocks, `bias` ([n] F32/F16/BF16) added when not null.
// cudaErrorNotSupported (nothing launched) for another dtype or a k that is
// not a whole number of blocks.
cudaError_t quant_matmul(const float* x, int rows, const void* w, runtime::DType dtype, int64_t n, int k,
                         const void* bias, runtime::DType bias_dtype, float* out, cudaStream_t stream);

// out[i, :] = table[ids[i] - first_id, :] decoded; table: `rows` rows of
// `dim` values in `dtype` blocks. Ids outside the table give zeros (a
// vocabulary slice under tensor parallelism); rows < 0: the whole vocabulary.
cudaError_t quant_embedding(const void* table, runtime::DType dtype, const int32_t* ids, int n, int dim, float* out,
                            cudaStream_t stream, int64_t first_id = 0, int64_t rows = -1);

}  // namespace ghostd::kernels

#ifdef __CUDACC__
#include <cuda_fp16.h>

#include "kernels/common.cuh"

namespace ghostd::kernels::quant {

using runtime::DType;

template <DType D>
struct BlockOf;
template <> struct BlockOf<DType::kQ4_0> { static constexpr int kValues = 32, kBytes = 18; };
template <> struct BlockOf<DType::kQ4_1> { static constexpr int kValues = 32, kBytes = 20; };
template <> struct BlockOf<DType::kQ5_0> { static constexpr int kValues = 32, kBytes = 22; };
template <> struct BlockOf<DType::kQ5_1> { static constexpr int kValues = 32, kBytes = 24; };
template <> struct BlockOf<DType::kQ8_0> { static constexpr int kValues = 32, kBytes = 34; };
template <> struct BlockOf<DType::kQ4_K> { static constexpr int kValues = 256, kBytes = 144; };
template <> struct BlockOf<DType::kQ5_K> { static constexpr int kValues = 256, kBytes = 176; };
template <> struct BlockOf<DType::kQ6_K> { static constexpr int kValues = 256, kBytes = 210; };

// Byte loads: block fields sit at offsets that are not multiples of their size.
__device__ __forceinline__ float f16_at(const uint8_t* p) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(p[0] | (p[1] << 8))));
}
__device__ __forceinline__ uint32_t u32_at(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}

// Sub-block j's 6-bit scale and min of a Q4_K/Q5_K block (ggml's packing).
__device__ __forceinline__ void k_scale_min(int j, const uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Value e (0 .. kValues - 1) of the block at b.
template <DType D>
__device__ __forceinline__ float value(const uint8_t* __restrict__ b, int e) {
  if constexpr (D == DType::kQ4_0) {
    const int j = e & 15;
    const int q = e < 16 ? (b[2 + j] & 0xF) : (b[2 + j] >> 4);
    return __fmul_rn(static_cast<float>(q - 8), f16_at(b));
  } else if constexpr (D == DType::kQ4_1) {
    const int j = e & 15;
    const int q = e < 16 ? (b[4 + j] & 0xF) : (b[4 + j] >> 4);
    return __fadd_rn(__fmul_rn(static_cast<float>(q), f16_at(b)), f16_at(b + 2));
  } else if constexpr (D == DType::kQ5_0) {
    const int j = e & 15;
    const int lo = e < 16 ? (b[6 + j] & 0xF) : (b[6 + j] >> 4);
    const int q = lo | static_cast<int>(((u32_at(b + 2) >> e) & 1u) << 4);  // bit e of qh is value e's fifth bit
    return __fmul_rn(static_cast<float>(q - 16), f16_at(b));
  } else if constexpr (D == DType::kQ5_1) {
    const int j = e & 15;
    const int lo = e < 16 ? (b[8 + j] & 0xF) : (b[8 + j] >> 4);
    const int q = lo | static_cast<int>(((u32_at(b + 4) >> e) & 1u) << 4);
    return __fadd_rn(__fmul_rn(static_cast<float>(q), f16_at(b)), f16_at(b + 2));
  } else if constexpr (D == DType::kQ8_0) {
    return __fmul_rn(static_cast<float>(static_cast<int8_t>(b[2 + e])), f16_at(b));
  } else if constexpr (D == DType::kQ4_K || D == DType::kQ5_K) {
    // 8 sub-blocks of 32; sub-blocks 2i and 2i + 1 share 32 bytes (low, high nibbles).
    const int sub = e >> 5, l = e & 31;
    const uint8_t* qs = b + (D == DType::kQ4_K ? 16 : 48);
    const uint8_t byte = qs[(sub >> 1) * 32 + l];
    int q = (sub & 1) ? (byte >> 4) : (byte & 0xF);
    if constexpr (D == DType::kQ5_K) q += ((b[16 + l] >> sub) & 1) * 16;
    int sc = 0, m = 0;
    k_scale_min(sub, b + 4, sc, m);
    const float d1 = __fmul_rn(f16_at(b), static_cast<float>(sc));
    const float m1 = __fmul_rn(f16_at(b + 2), static_cast<float>(m));
    return __fsub_rn(__fmul_rn(d1, static_cast<float>(q)), m1);
  } else {
    static_assert(D == DType::kQ6_K, "a block type");
    // Two halves of 128; in each, quarter t of 32 takes nibbles of ql (low for
    // t < 2), two bits of qh (bits 2t) and scale l / 16 + 2t.
    const int half = e >> 7, t = (e >> 5) & 3, l = e & 31;
    const uint8_t qlb = b[half * 64 + l + (t & 1) * 32];
    const int lo = t >= 2 ? (qlb >> 4) : (qlb & 0xF);
    const int hi = (b[128 + half * 32 + l] >> (2 * t)) & 3;
    const int q = (lo | (hi << 4)) - 32;
    const auto sc = static_cast<int8_t>(b[192 + half * 8 + l / 16 + 2 * t]);
    return __fmul_rn(__fmul_rn(f16_at(b + 208), static_cast<float>(sc)), static_cast<float>(q));
  }
}

template <DType D>
__device__ __forceinline__ float value_at(const uint8_t* __restrict__ row, int c) {
  using B = BlockOf<D>;
  return value<D>(row + static_cast<int64_t>(c / B::kValues) * B::kBytes, c % B::kValues);
}

// Element i of a bias whose dtype is known at run time.
__device__ __forceinline__ float bias_at(const void* p, DType d, int64_t i) {
  switch (d) {
    case DType::kF16:
      return __half2float(static_cast<const __half*>(p)[i]);
    case DType::kBF16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    default:
      return static_cast<const float*>(p)[i];
  }
}

// Grid: x over weight rows (a warp each), y over groups of R activation rows.
template <DType D, int R>
__global__ void matmul_kernel(const float* __restrict__ x, int rows, const uint8_t* __restrict__ w, int64_t n_out,
                              int k, const void* __restrict__ bias, DType bias_dtype, float* __restrict__ out) {
  using B = BlockOf<D>;
  const int lane = threadIdx.x % kWarp;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (n >= n_out) return;
  const int r0 = static_cast<int>(blockIdx.y) * R;
  const uint8_t* wr = w + n * static_cast<int64_t>(k / B::kValues) * B::kBytes;
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.0f;
  for (int c = lane; c < k; c += kWarp) {
    const float v = value_at<D>(wr, c);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (r0 + r < rows) acc[r] = fmaf(v, __ldg(x + static_cast<int64_t>(r0 + r) * k + c), acc[r]);
    }
  }
  const float b = bias != nullptr ? bias_at(bias, bias_dtype, n) : 0.0f;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const float s = warp_sum(acc[r]);
    if (lane == 0 && r0 + r < rows) out[static_cast<int64_t>(r0 + r) * n_out + n] = bias != nullptr ? s + b : s;
  }
}

template <DType D>
__global__ void embedding_kernel(const uint8_t* __restrict__ table, const int32_t* __restrict__ ids, int dim,
                                 float* __restrict__ out, int64_t first_id, int64_t rows) {
  using B = BlockOf<D>;
  const int i = blockIdx.x;
  const int64_t r = static_cast<int64_t>(ids[i]) - first_id;
  float* dst = out + static_cast<int64_t>(i) * dim;
  if (rows >= 0 && (r < 0 || r >= rows)) {
    for (int c = threadIdx.x; c < dim; c += blockDim.x) dst[c] = 0.0f;
    return;
  }
  const uint8_t* row = table + r * (dim / B::kValues) * B::kBytes;
  for (int c = threadIdx.x; c < dim; c += blockDim.x) dst[c] = value_at<D>(row, c);
}

}  // namespace ghostd::kernels::quant
#endif
