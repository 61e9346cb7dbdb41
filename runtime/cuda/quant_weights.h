// GGUF block-quantized weights on the GPU: the file's blocks are copied as
// they are (a Weight of kQ4_0 .. kQ6_K or kQ8_0 keeps its dtype) and decoded
// where they are used, by kernels/quant_matmul (matmul and embedding), so a
// model's device size stays its file size. Kept apart from cuda_backend.cpp:
// the backend calls these three and nothing else about block types.
#pragma once

#include <cuda_runtime_api.h>

#include "runtime/core/backend.h"
#include "runtime/core/result.h"
#include "runtime/core/tensor.h"
#include "runtime/cuda/cuda_handles.h"

namespace ghostd::runtime::cuda {

// Copies a block-quantized tensor's rows x cols values to `mem` (allocated
// here); an Error names the tensor when its rows are not whole blocks, the
// file holds fewer bytes than its shape needs, or the GPU refuses.
Status upload_block_weight(const TensorView& t, int64_t rows, int64_t cols, cudaStream_t stream, DeviceMemory& mem);

// out[r, :] = x[r, :] . w^T (+ bias) on a block-quantized `w`.
cudaError_t block_matmul(const float* x, int rows, const Weight& w, const Weight* bias, float* out,
                         cudaStream_t stream);

// Rows `ids` of a block-quantized table, decoded. With `slice`, the table is
// the rows from `first_id` on of a vocabulary: other ids give zeros.
cudaError_t block_embedding(const Weight& table, const int32_t* ids, int n, float* out, cudaStream_t stream,
                            int64_t first_id = 0, bool slice = false);

}  // namespace ghostd::runtime::cuda
