// Batch-invariant matrix product on tensor cores for F16/BF16 weights.
//
// out[r, n] = dot(x16[r, :], w[n, :]) (+ bias[n]) for any number of rows:
// x16 [rows, k] holds the activations rounded to the weight dtype, w [n, k]
// the weights, out [rows, n] is float.
//
// The reduction order of every output element is fixed by (n, k) alone:
// k is cut into 32-wide chunks, the chunks into S = linear_mma_slices(n, k)
// contiguous slices; each slice is one chain of m16n8k16 mma steps from zero
// (two per chunk, in ascending chunk order, each thread feeding 8 adjacent k
// values), and the slices' sums are added in slice order to zero, then the
// bias. Both kernels follow this order: the skinny one (up to 32 rows by
// default, no shared memory, each warp streaming 8 weight rows of one slice)
// and the tiled one (64x64 tiles through shared memory, the slices in turn). So a
// row's result does not depend on how many rows the call has, which rows
// they are or which kernel the row count picks: decode, verify and prefill
// rows agree bit for bit. S depends on the weight's shape only (it gives
// small matrices enough warps at batch 1), never on the row count.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "runtime/core/dtype.h"

namespace ghostd::kernels {

// cudaErrorNotSupported (nothing launched) for a dtype other than F16/BF16,
// k % 32 != 0 or a pointer that is not 16-byte aligned.
cudaError_t linear_mma(const void* x16, int rows, const void* w, runtime::DType dtype, int64_t n,
                       int k, const void* bias, runtime::DType bias_dtype, float* out,
                       cudaStream_t stream);

// The slices of k for an [n, k] weight.
int linear_mma_slices(int64_t n, int k);

// Benchmark knobs, process-wide; 0 keeps a knob as it is. The warps the
// slices aim at (default 1024) changes S and so the results, which stay
// batch invariant; the chunks each skinny warp loads ahead (4, 8 or 16;
// default 8) and the most rows the skinny kernel takes (default 32; above
// 32 it runs 32-row groups side by side) change speed only.
void linear_mma_tune(int target_warps, int unroll, int skinny_rows = 0);

}  // namespace ghostd::kernels
