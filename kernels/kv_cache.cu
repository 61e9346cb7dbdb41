#include "kernels/kv_cache.cuh"

namespace ghostd::kernels {

cudaError_t kv_store(const float* k, const float* v, const int32_t* slots, int num_tokens,
                     int kv_dim, float* k_pool, float* v_pool, cudaStream_t stream) {
  if (num_tokens <= 0) return cudaSuccess;
  const int threads = kv_dim >= 256 ? 256 : ((kv_dim + 31) / 32) * 32;
  kv_store_kernel<<<num_tokens, threads, 0, stream>>>(k, v, slots, kv_dim, k_pool, v_pool);
  return cudaGetLastError();
}

}  // namespace ghostd::kernels
