#include "kernels/gemv.cuh"

#include <utility>

namespace ghostd::kernels {

namespace {

constexpr int kThreads = 256;  // 8 warps: 8 output columns per block

template <class T, int R>
cudaError_t launch(const float* x, const void* w, int64_t n, int k, const void* bias,
                   runtime::DType bias_dtype, float* out, cudaStream_t s, unsigned chunks = 1) {
  const int64_t per_block = kThreads / kWarp;
  const int64_t blocks = (n + per_block - 1) / per_block;
  const dim3 grid(static_cast<unsigned>(blocks), chunks);
  gemv_kernel<T, R><<<grid, kThreads, 0, s>>>(x, static_cast<const T*>(w), n, k, bias, bias_dtype, out);
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

cudaError_t gemv_rows(const float* x, int rows, const void* w, runtime::DType dtype, int64_t n,
                      int k, const void* bias, runtime::DType bias_dtype, float* out,
                      cudaStream_t stream) {
  if (rows <= kGemvMaxRows) return gemv(x, rows, w, dtype, n, k, bias, bias_dtype, out, stream);
  if (k % 8 != 0 || !aligned16(x) || !aligned16(w)) return cudaErrorNotSupported;
  if (n <= 0) return cudaSuccess;
  if (dtype == runtime::DType::kQ8_0 || (bias && bias_dtype == runtime::DType::kQ8_0))
    return cudaErrorNotSupported;
  const int full = rows / kGemvMaxRows, rest = rows % kGemvMaxRows;
  if (full > 65535) return cudaErrorNotSupported;
  cudaError_t e = dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    return launch<T, kGemvMaxRows>(x, w, n, k, bias, bias_dtype, out, stream, static_cast<unsigned>(full));
  });
  if (e != cudaSuccess || rest == 0) return e;
  const int64_t done = static_cast<int64_t>(full) * kGemvMaxRows;
  return gemv(x + done * k, rest, w, dtype, n, k, bias, bias_dtype, out + done * n, stream);
}

}  // namespace ghostd::kernels
