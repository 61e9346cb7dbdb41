#include "kernels/elementwise.cuh"

namespace ghostd::kernels {

namespace {
constexpr int kThreads = 256;
}

cudaError_t embedding(const void* table, runtime::DType dtype, const int32_t* ids, int n, int dim,
                      float* out, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    embedding_kernel<T><<<n, kThreads, 0, stream>>>(static_cast<const T*>(table), ids, dim, out);
    return cudaGetLastError();
  });
}

cudaError_t embedding_slice(const void* table, runtime::DType dtype, int64_t rows, const int32_t* ids, int n,
                            int dim, int64_t first_id, float* out, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    embedding_slice_kernel<T><<<n, kThreads, 0, stream>>>(static_cast<const T*>(table), rows, ids, dim, first_id, out);
    return cudaGetLastError();
  });
}

cudaError_t silu_mul(const float* gate, const float* up, int64_t n, float* out,
                     cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  silu_mul_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(gate, up, n, out);
  return cudaGetLastError();
}

cudaError_t gelu_mul(const float* gate, const float* up, int64_t n, float* out, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  gelu_mul_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(gate, up, n, out);
  return cudaGetLastError();
}

cudaError_t gelu(const float* x, int64_t n, float* out, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  gelu_mul_kernel<float><<<grid_for(n, kThreads), kThreads, 0, stream>>>(x, nullptr, n, out);
  return cudaGetLastError();
}

cudaError_t scale(float* x, float s, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  scale_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(x, s, n);
  return cudaGetLastError();
}

cudaError_t add(float* x, const float* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  add_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(x, y, n);
  return cudaGetLastError();
}

cudaError_t add_bias(float* out, const void* bias, runtime::DType dtype, int rows, int64_t n,
                     cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(rows) * n;
  if (total <= 0) return cudaSuccess;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    add_bias_kernel<T><<<grid_for(total, kThreads), kThreads, 0, stream>>>(
        out, static_cast<const T*>(bias), n, total);
    return cudaGetLastError();
  });
}

cudaError_t gather_rows(const float* x, const int32_t* rows, int n, int dim, float* out,
                        cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  gather_rows_kernel<<<n, kThreads, 0, stream>>>(x, rows, dim, out);
  return cudaGetLastError();
}

}  // namespace ghostd::kernels
