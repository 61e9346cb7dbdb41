// Batch-invariant matrix product on tensor cores for F16/BF16 weights.
//
// out[r, n] = dot(x16[r, :], w[n, :]) (+ bias[n]) for any number of rows:
// x16 [rows, k] holds the activations rounded to the weight dtype, w [n, k]
// the weights, out [rows, n] is float. Every output element is one chain of
// m16n8k16 mma steps over k in ascending order, accumulated in float32 from
// zero, the bias added after the sum, in every tile configuration. So a row's
// result depends on that row and the weights only: not on how many rows the
// call has, which rows they are, or which configuration the row count picks
// (decode, verify and prefill rows agree bit for bit). No split-K.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "runtime/core/dtype.h"

namespace ghostd::kernels {

// cudaErrorNotSupported (nothing launched) for a dtype other than F16/BF16,
// k % 16 != 0 or a pointer that is not 16-byte aligned.
cudaError_t linear_mma(const void* x16, int rows, const void* w, runtime::DType dtype, int64_t n,
                       int k, const void* bias, runtime::DType bias_dtype, float* out,
                       cudaStream_t stream);

// The tile configuration linear_mma takes for `rows` ("16x16x128" ...).
const char* linear_mma_config(int rows);

}  // namespace ghostd::kernels
