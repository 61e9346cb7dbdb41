#include "kernels/rms_norm.cuh"

namespace ghostd::kernels {

cudaError_t rms_norm(const float* x, const void* w, runtime::DType dtype, int rows, int dim,
                     float eps, float* out, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  const int threads = dim >= 4096 ? 1024 : dim >= 1024 ? 512 : 128;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    rms_norm_kernel<T><<<rows, threads, 0, stream>>>(x, static_cast<const T*>(w), dim, eps, out);
    return cudaGetLastError();
  });
}

cudaError_t add_rms_norm(float* x, const float* y, const void* w, runtime::DType dtype, int rows, int dim,
                         float eps, float* out, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  const int threads = dim >= 4096 ? 1024 : dim >= 1024 ? 512 : 128;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    add_rms_norm_kernel<T><<<rows, threads, 0, stream>>>(x, y, static_cast<const T*>(w), dim, eps, out);
    return cudaGetLastError();
  });
}

}  // namespace ghostd::kernels
