#include "kernels/quant_matmul.cuh"

#include <type_traits>

namespace ghostd::kernels {

namespace {

constexpr int kThreads = 256;  // 8 warps: 8 weight rows per block
constexpr int kRowsPerLaunchRow = 8;  // activation rows a warp reuses one weight row for

using runtime::DType;

// Calls f(std::integral_constant<DType, D>{}) for the block type `d`;
// cudaErrorNotSupported for any other.
template <class F>
cudaError_t dispatch_block(DType d, F&& f) {
  switch (d) {
    case DType::kQ4_0: return f(std::integral_constant<DType, DType::kQ4_0>{});
    case DType::kQ4_1: return f(std::integral_constant<DType, DType::kQ4_1>{});
    case DType::kQ5_0: return f(std::integral_constant<DType, DType::kQ5_0>{});
    case DType::kQ5_1: return f(std::integral_constant<DType, DType::kQ5_1>{});
    case DType::kQ8_0: return f(std::integral_constant<DType, DType::kQ8_0>{});
    case DType::kQ4_K: return f(std::integral_constant<DType, DType::kQ4_K>{});
    case DType::kQ5_K: return f(std::integral_constant<DType, DType::kQ5_K>{});
    case DType::kQ6_K: return f(std::integral_constant<DType, DType::kQ6_K>{});
    default: return cudaErrorNotSupported;
  }
}

}  // namespace

bool quant_matmul_supports(DType dtype) {
  return dispatch_block(dtype, [](auto) { return cudaSuccess; }) == cudaSuccess;
}

cudaError_t quant_matmul(const float* x, int rows, const void* w, DType dtype, int64_t n, int k, const void* bias,
                         DType bias_dtype, float* out, cudaStream_t stream) {
  if (bias != nullptr && bias_dtype != DType::kF32 && bias_dtype != DType::kF16 && bias_dtype != DType::kBF16)
    return cudaErrorNotSupported;
  return dispatch_block(dtype, [&](auto tag) -> cudaError_t {
    constexpr DType D = decltype(tag)::value;
    if (k <= 0 || k % quant::BlockOf<D>::kValues != 0) return cudaErrorNotSupported;
    if (rows <= 0 || n <= 0) return cudaSuccess;
    const int64_t per_block = kThreads / kWarp;
    const auto blocks_x = static_cast<unsigned>((n + per_block - 1) / per_block);
    const auto* wb = static_cast<const uint8_t*>(w);
    if (rows == 1) {
      quant::matmul_kernel<D, 1><<<dim3(blocks_x, 1), kThreads, 0, stream>>>(x, rows, wb, n, k, bias, bias_dtype,
                                                                              out);
    } else {
      const auto blocks_y = static_cast<unsigned>((rows + kRowsPerLaunchRow - 1) / kRowsPerLaunchRow);
      if (blocks_y > 65535u) return cudaErrorNotSupported;
      quant::matmul_kernel<D, kRowsPerLaunchRow>
          <<<dim3(blocks_x, blocks_y), kThreads, 0, stream>>>(x, rows, wb, n, k, bias, bias_dtype, out);
    }
    return cudaGetLastError();
  });
}

cudaError_t quant_embedding(const void* table, DType dtype, const int32_t* ids, int n, int dim, float* out,
                            cudaStream_t stream, int64_t first_id, int64_t rows) {
  return dispatch_block(dtype, [&](auto tag) -> cudaError_t {
    constexpr DType D = decltype(tag)::value;
    if (dim <= 0 || dim % quant::BlockOf<D>::kValues != 0) return cudaErrorNotSupported;
    if (n <= 0) return cudaSuccess;
    quant::embedding_kernel<D>
        <<<n, kThreads, 0, stream>>>(static_cast<const uint8_t*>(table), ids, dim, out, first_id, rows);
    return cudaGetLastError();
  });
}

}  // namespace ghostd::kernels
