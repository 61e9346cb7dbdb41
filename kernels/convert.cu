#include "kernels/convert.cuh"

namespace ghostd::kernels {

namespace {
constexpr int kThreads = 256;
}

cudaError_t convert_activations(const float* x, int64_t n, runtime::DType dtype, void* out,
                                cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  if (dtype != runtime::DType::kF16 && dtype != runtime::DType::kBF16) return cudaErrorInvalidValue;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    convert_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream>>>(x, n, static_cast<T*>(out));
    return cudaGetLastError();
  });
}

cudaError_t dequantize_q8_0_to_f16(const void* blocks, int64_t n, void* out, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  if (n % 32 != 0) return cudaErrorInvalidValue;
  dequantize_q8_0_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(
      static_cast<const uint8_t*>(blocks), n, static_cast<__half*>(out));
  return cudaGetLastError();
}

}  // namespace ghostd::kernels
