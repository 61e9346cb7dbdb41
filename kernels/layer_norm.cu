#include "kernels/layer_norm.cuh"

namespace ghostd::kernels {

namespace {

cudaError_t launch(float* x, const float* y, const void* w, runtime::DType w_dtype, const void* b,
                   runtime::DType b_dtype, int rows, int dim, float eps, float* out, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  const int threads = dim >= 4096 ? 1024 : dim >= 1024 ? 512 : 128;
  return dispatch_dtype(w_dtype, [&](auto wtag) {
    using W = decltype(wtag);
    return dispatch_dtype(b_dtype, [&](auto btag) {
      using B = decltype(btag);
      layer_norm_kernel<W, B><<<rows, threads, 0, stream>>>(x, y, static_cast<const W*>(w), static_cast<const B*>(b),
                                                             dim, eps, out);
      return cudaGetLastError();
    });
  });
}

}  // namespace

cudaError_t layer_norm(const float* x, const void* w, runtime::DType w_dtype, const void* b, runtime::DType b_dtype,
                       int rows, int dim, float eps, float* out, cudaStream_t stream) {
  // Without y the kernel only reads x.
  return launch(const_cast<float*>(x), nullptr, w, w_dtype, b, b_dtype, rows, dim, eps, out, stream);
}

cudaError_t add_layer_norm(float* x, const float* y, const void* w, runtime::DType w_dtype, const void* b,
                           runtime::DType b_dtype, int rows, int dim, float eps, float* out, cudaStream_t stream) {
  return launch(x, y, w, w_dtype, b, b_dtype, rows, dim, eps, out, stream);
}

}  // namespace ghostd::kernels
