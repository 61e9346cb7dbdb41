#include "runtime/cuda/quant_weights.h"

#include <string>

#include "kernels/quant_matmul.cuh"

namespace ghostd::runtime::cuda {

Status upload_block_weight(const TensorView& t, int64_t rows, int64_t cols, cudaStream_t stream, DeviceMemory& mem) {
  if (!kernels::quant_matmul_supports(t.dtype))
    return Error{"tensor " + t.name + ": " + dtype_name(t.dtype) + " is not a block type the CUDA kernels take"};
  if (!dtype_count_ok(t.dtype, cols))
    return Error{"tensor " + t.name + ": " + dtype_name(t.dtype) + " rows must be a multiple of " +
                 std::to_string(dtype_block_elems(t.dtype)) + " elements, not " + std::to_string(cols)};
  const size_t bytes = dtype_bytes(t.dtype, cols) * static_cast<size_t>(rows);
  if (t.nbytes < bytes)
    return Error{"tensor " + t.name + ": " + std::to_string(t.nbytes) + " bytes, expected " + std::to_string(bytes)};
  if (cudaError_t e = DeviceMemory::allocate(bytes, mem); e != cudaSuccess) {
    cudaGetLastError();
    return Error{"tensor " + t.name + ": cannot allocate " + std::to_string(bytes) +
                 " bytes on the GPU: " + cuda_error_string(e)};
  }
  cudaError_t e = cudaMemcpyAsync(mem.get(), t.data, bytes, cudaMemcpyDefault, stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(stream);  // the mapping may be unmapped after loading
  if (e != cudaSuccess) {
    cudaGetLastError();
    return Error{"tensor " + t.name + ": copy to the GPU failed: " + cuda_error_string(e)};
  }
  return {};
}

cudaError_t block_matmul(const float* x, int rows, const Weight& w, const Weight* bias, float* out,
                         cudaStream_t stream) {
  const bool has_bias = bias != nullptr && *bias;
  return kernels::quant_matmul(x, rows, w.data, w.dtype, w.rows, static_cast<int>(w.cols),
                               has_bias ? bias->data : nullptr, has_bias ? bias->dtype : DType::kF32, out, stream);
}

cudaError_t block_embedding(const Weight& table, const int32_t* ids, int n, float* out, cudaStream_t stream,
                            int64_t first_id, bool slice) {
  return kernels::quant_embedding(table.data, table.dtype, ids, n, static_cast<int>(table.cols), out, stream, first_id,
                                  slice ? table.rows : -1);
}

}  // namespace ghostd::runtime::cuda
