// Writes new tokens' K and V into their paged-cache slots.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace ghostd::kernels {

// k, v: [num_tokens, kv_dim]; slot t of the pools gets row t.
cudaError_t kv_store(const float* k, const float* v, const int32_t* slots, int num_tokens,
                     int kv_dim, float* k_pool, float* v_pool, cudaStream_t stream);

// One wave of copy-on-write block copies over every layer, in one launch.
// layer_pools: [num_layers * 2] device pointers (K of layer 0, V of layer 0,
// ...); pairs: [num_copies * 2] (src, dst) block ids, device memory. The
// copies of one wave must not depend on each other (no block is written by
// one copy and read or written by another); the caller splits at hazards.
cudaError_t copy_kv_blocks(float* const* layer_pools, int num_layers, const int32_t* pairs, int num_copies,
                           int64_t block_floats, cudaStream_t stream);

}  // namespace ghostd::kernels

#ifdef __CUDACC__
#include "kernels/common.cuh"

namespace ghostd::kernels {

template <class T = float>
__global__ void kv_store_kernel(const T* __restrict__ k, const T* __restrict__ v,
                                const int32_t* __restrict__ slots, int kv_dim,
                                T* __restrict__ k_pool, T* __restrict__ v_pool) {
  const int64_t src = static_cast<int64_t>(blockIdx.x) * kv_dim;
  const int64_t dst = static_cast<int64_t>(slots[blockIdx.x]) * kv_dim;
  for (int c = threadIdx.x; c < kv_dim; c += blockDim.x) {
    k_pool[dst + c] = k[src + c];
    v_pool[dst + c] = v[src + c];
  }
}

}  // namespace ghostd::kernels
#endif
