#include "kernels/kv_cache.cuh"

#include <algorithm>

namespace ghostd::kernels {

cudaError_t kv_store(const float* k, const float* v, const int32_t* slots, int num_tokens,
                     int kv_dim, float* k_pool, float* v_pool, cudaStream_t stream) {
  if (num_tokens <= 0) return cudaSuccess;
  const int threads = kv_dim >= 256 ? 256 : ((kv_dim + 31) / 32) * 32;
  kv_store_kernel<<<num_tokens, threads, 0, stream>>>(k, v, slots, kv_dim, k_pool, v_pool);
  return cudaGetLastError();
}

namespace {

// blockIdx.y: copy, blockIdx.z: pool (layer * 2 + K/V); x strides the block.
__global__ void copy_kv_blocks_kernel(float* const* __restrict__ pools, const int32_t* __restrict__ pairs,
                                      int64_t block_floats) {
  float* pool = pools[blockIdx.z];
  const float4* src = reinterpret_cast<const float4*>(pool + pairs[2 * blockIdx.y] * block_floats);
  float4* dst = reinterpret_cast<float4*>(pool + pairs[2 * blockIdx.y + 1] * block_floats);
  const int64_t n4 = block_floats / 4;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n4;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = src[i];
}

__global__ void copy_kv_blocks_scalar_kernel(float* const* __restrict__ pools, const int32_t* __restrict__ pairs,
                                             int64_t block_floats) {
  float* pool = pools[blockIdx.z];
  const float* src = pool + pairs[2 * blockIdx.y] * block_floats;
  float* dst = pool + pairs[2 * blockIdx.y + 1] * block_floats;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < block_floats;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = src[i];
}

}  // namespace

cudaError_t copy_kv_blocks(float* const* layer_pools, int num_layers, const int32_t* pairs, int num_copies,
                           int64_t block_floats, cudaStream_t stream) {
  if (num_copies <= 0 || num_layers <= 0) return cudaSuccess;
  if (num_copies > 65535 || 2 * num_layers > 65535) return cudaErrorInvalidValue;
  constexpr int kThreads = 256;
  const bool vec = block_floats % 4 == 0;  // pools are cudaMalloc-aligned
  const int64_t items = vec ? block_floats / 4 : block_floats;
  const unsigned gx = static_cast<unsigned>(std::min<int64_t>(8, (items + kThreads - 1) / kThreads));
  const dim3 grid(gx < 1 ? 1 : gx, static_cast<unsigned>(num_copies), static_cast<unsigned>(2 * num_layers));
  if (vec) {
    copy_kv_blocks_kernel<<<grid, kThreads, 0, stream>>>(layer_pools, pairs, block_floats);
  } else {
    copy_kv_blocks_scalar_kernel<<<grid, kThreads, 0, stream>>>(layer_pools, pairs, block_floats);
  }
  return cudaGetLastError();
}

}  // namespace ghostd::kernels
