#include "kernels/gemv.cuh"

#include <utility>

namespace ghostd::kernels {

namespace {

constexpr int kThreads = 256;  // 8 warps: 8 output columns per block

template <class T, int R>
cudaError_t launch(const float* x, const void* w, int64_t n, int k, const void* bias,
                   runtime::DType bias_dtype, float* out, cudaStream_t s) {
  const int64_t per_block = kThreads / kWarp;
  const int64_t blocks = (n + per_block - 1) / per_block;
  gemv_kernel<T, R><<<static_cast<unsigned>(blocks), kThreads, 0, s>>>(x, static_cast<const T*>(w),
                                                                       n, k, bias, bias_dtype, out);
  return cudaGetLastError();
}

template <class T, int... R>
cudaError_t by_rows(int rows, const float* x, const void* w, int64_t n, int k, const void* bias,
                    runtime::DType bias_dtype, float* out, cudaStream_t s,
                    std::integer_sequence<int, R...>) {
  cudaError_t e = cudaErrorNotSupported;
  ((rows == R + 1 ? (e = launch<T, R + 1>(x, w, n, k, bias, bias_dtype, out, s), true) : false) ||
   ...);
  return e;
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

}  // namespace

cudaError_t gemv(const float* x, int rows, const void* w, runtime::DType dtype, int64_t n, int k,
                 const void* bias, runtime::DType bias_dtype, float* out, cudaStream_t stream) {
  if (rows < 1 || rows > kGemvMaxRows || k % 8 != 0 || !aligned16(x) || !aligned16(w))
    return cudaErrorNotSupported;
  if (n <= 0) return cudaSuccess;
  if (dtype == runtime::DType::kQ8_0 || (bias && bias_dtype == runtime::DType::kQ8_0))
    return cudaErrorNotSupported;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    return by_rows<T>(rows, x, w, n, k, bias, bias_dtype, out, stream,
                      std::make_integer_sequence<int, kGemvMaxRows>{});
  });
}

}  // namespace ghostd::kernels
