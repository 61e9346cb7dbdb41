#include "kernels/rope.cuh"

namespace ghostd::kernels {

cudaError_t rope(float* x, int rows, int n_heads, int head_dim, const int32_t* positions,
                 const float* inv_freq, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  const int pairs = n_heads * (head_dim / 2);
  const int threads = pairs >= 512 ? 512 : ((pairs + 31) / 32) * 32;
  rope_kernel<<<rows, threads, 0, stream>>>(x, n_heads, head_dim, positions, inv_freq);
  return cudaGetLastError();
}

}  // namespace ghostd::kernels
