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

cudaError_t rope_store_kv(float* q, float* k, const float* v, int rows, int n_heads, int n_kv_heads, int head_dim,
                          const int32_t* positions, const float* inv_freq, const int32_t* slots, float* k_pool,
                          float* v_pool, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  const int pairs = (n_heads + n_kv_heads) * (head_dim / 2);
  const int threads = pairs >= 512 ? 512 : ((pairs + 31) / 32) * 32;
  rope_store_kv_kernel<<<rows, threads, 0, stream>>>(q, k, v, n_heads, n_kv_heads, head_dim, positions, inv_freq,
                                                     slots, k_pool, v_pool);
  return cudaGetLastError();
}

}  // namespace ghostd::kernels
