// Causal attention of each new token over its sequence's paged KV cache (or
// its last `window` positions: sliding-window attention), with grouped-query
// heads. One block per (token, head, split): each warp keeps an
// online softmax over its share of the positions, so any context length runs
// in fixed registers and shared memory. Long contexts are split across
// blocks and a second kernel merges the partial softmaxes in split order.
//
// Batch invariance: a token's splits depend on its own context length only
// (attention_token_splits), never on the other tokens of the step or on
// occupancy, so its output is bitwise the same alone, batched, as a verify
// row or in a prefill chunk. (A one-split token gives the same bits through
// the merge as without it: the merge multiplies by expf(0) = 1 and adds 0.)
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace ghostd::kernels {

inline constexpr int kAttentionMaxHeadDim = 256;
inline constexpr int kAttentionMaxSplits = 16;          // per token
inline constexpr int kAttentionSplitMinPositions = 64;  // a split covers at least this many

// Splits of a token that attends to n_ctx positions: a function of n_ctx only.
#ifdef __CUDACC__
__host__ __device__
#endif
inline int attention_token_splits(int n_ctx) {
  const int s = (n_ctx + kAttentionSplitMinPositions - 1) / kAttentionSplitMinPositions;
  return s < 1 ? 1 : (s > kAttentionMaxSplits ? kAttentionMaxSplits : s);
}

struct AttentionArgs {
  const float* q = nullptr;              // [num_tokens, n_heads * head_dim]
  const int32_t* positions = nullptr;    // token t attends to positions 0..positions[t]
  const int32_t* token_seq = nullptr;    // sequence of each token
  const int32_t* table_start = nullptr;  // block table offsets per sequence
  const int32_t* tables = nullptr;
  const float* k_pool = nullptr;  // [slots, n_kv_heads * head_dim]
  const float* v_pool = nullptr;
  int num_tokens = 0;
  int block_size = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  float scale = 1.0f;
  int window = 0;       // sliding window: the last `window` positions only; 0: all
  int max_context = 0;  // largest positions[t] + 1 of the step (host-known); 0: unknown
  // Draft-tree tokens (null: none in the step): per token, the mask of its
  // sequence's new tokens it attends to; its logical position q reads KV
  // index runtime::tree_kv_index (runtime/core/tree_mask.h).
  const uint64_t* tree_mask = nullptr;
};

// Split slots of the launch (the most any token of the step uses), and the
// workspace (floats) they need; 0 floats when no token splits.
int attention_splits(const AttentionArgs& args);
size_t attention_workspace_floats(const AttentionArgs& args);

// out: [num_tokens, n_heads * head_dim]. `workspace` must hold
// attention_workspace_floats(args) floats.
cudaError_t paged_attention(const AttentionArgs& args, float* out, float* workspace, cudaStream_t stream);

}  // namespace ghostd::kernels

#ifdef __CUDACC__
#include "kernels/common.cuh"
#include "runtime/core/tree_mask.h"

namespace ghostd::kernels {

inline constexpr int kAttentionWarps = 4;
inline constexpr int kAttentionUnroll = 4;  // positions per warp step (loads in flight)

// J = ceil(head_dim / 32): lane l holds elements l, l + 32, ... of q and of
// its output accumulator. G query heads that share one KV head are handled
// by one block (G = 1: one head per block), so each K/V row is read once per
// G heads.
template <int J, int G>
__global__ void __launch_bounds__(kAttentionWarps* kWarp)
    paged_attention_kernel(AttentionArgs a, int splits, float* __restrict__ out,
                           float* __restrict__ partial) {
  __shared__ float sm_m[kAttentionWarps][G], sm_l[kAttentionWarps][G];
  __shared__ float sm_acc[kAttentionWarps][G][J * kWarp];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int blocks_per_token = a.n_heads / G;
  const int t = blockIdx.x / blocks_per_token, h0 = (blockIdx.x % blocks_per_token) * G;
  const int split = blockIdx.y;
  const int hd = a.head_dim, group = a.n_heads / a.n_kv_heads;
  const int64_t kv_dim = static_cast<int64_t>(a.n_kv_heads) * hd;
  const int64_t head_off = static_cast<int64_t>(h0 / group) * hd;
  const int n_ctx = a.positions[t] + 1;
  // Attended positions [lo, n_ctx); the splits follow their count, still a
  // function of this token alone.
  const int lo = a.window > 0 ? max(0, n_ctx - a.window) : 0;
  const int own_splits = attention_token_splits(n_ctx - lo);
  if (split >= own_splits) {  // a slot this token does not use: an empty partial
    if (partial != nullptr && threadIdx.x == 0) {
      for (int g = 0; g < G; ++g) {
        float* part = partial + ((static_cast<int64_t>(t) * a.n_heads + h0 + g) * splits + split) * (hd + 2);
        part[0] = -INFINITY;
        part[1] = 0.0f;
      }
    }
    return;
  }
  const int chunk = (n_ctx - lo + own_splits - 1) / own_splits;
  const int begin = lo + split * chunk, end = min(n_ctx, begin + chunk);
  const int32_t* table = a.tables + a.table_start[a.token_seq[t]];
  // A draft-tree token: positions past `tbase` read its ancestors' KV.
  const uint64_t tmask = a.tree_mask != nullptr ? a.tree_mask[t] : 0;
  const int tbase = tmask != 0 ? runtime::tree_base(tmask, n_ctx - 1) : n_ctx;

  float qr[G][J], acc[G][J], m[G], l[G];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    const float* qv = a.q + (static_cast<int64_t>(t) * a.n_heads + h0 + g) * hd;
#pragma unroll
    for (int j = 0; j < J; ++j) {
      const int i = lane + j * kWarp;
      qr[g][j] = i < hd ? qv[i] : 0.0f;
      acc[g][j] = 0.0f;
    }
    m[g] = -INFINITY;
    l[g] = 0.0f;
  }
  for (int p0 = begin + warp * kAttentionUnroll; p0 < end;
       p0 += kAttentionWarps * kAttentionUnroll) {
    float vv[kAttentionUnroll][J];
    float s[kAttentionUnroll][G];
#pragma unroll
    for (int u = 0; u < kAttentionUnroll; ++u) {
      const int p = min(p0 + u, end - 1);  // clamped rows are read but masked
      const int kvi = p < tbase ? p : runtime::tree_kv_index(tmask, tbase, p);
      const int64_t slot =
          static_cast<int64_t>(table[kvi / a.block_size]) * a.block_size + kvi % a.block_size;
      const float* krow = a.k_pool + slot * kv_dim + head_off;
      const float* vrow = a.v_pool + slot * kv_dim + head_off;
      float kk[J];
#pragma unroll
      for (int j = 0; j < J; ++j) {
        const int i = lane + j * kWarp;
        kk[j] = i < hd ? krow[i] : 0.0f;
        vv[u][j] = i < hd ? vrow[i] : 0.0f;
      }
#pragma unroll
      for (int g = 0; g < G; ++g) {
        float d = 0.0f;
#pragma unroll
        for (int j = 0; j < J; ++j) d = fmaf(qr[g][j], kk[j], d);
        s[u][g] = d;
      }
    }
#pragma unroll
    for (int g = 0; g < G; ++g) {
      float m_new = m[g];
#pragma unroll
      for (int u = 0; u < kAttentionUnroll; ++u) {
        s[u][g] = p0 + u < end ? warp_sum(s[u][g]) * a.scale : -INFINITY;
        m_new = fmaxf(m_new, s[u][g]);
      }
      const float corr = expf(m[g] - m_new);  // 0 on the first step (m = -inf)
      l[g] *= corr;
#pragma unroll
      for (int j = 0; j < J; ++j) acc[g][j] *= corr;
#pragma unroll
      for (int u = 0; u < kAttentionUnroll; ++u) {
        const float w = expf(s[u][g] - m_new);  // 0 for masked positions
        l[g] += w;
#pragma unroll
        for (int j = 0; j < J; ++j) acc[g][j] = fmaf(w, vv[u][j], acc[g][j]);
      }
      m[g] = m_new;
    }
  }

  // Merge the warps' softmaxes, head by head.
#pragma unroll
  for (int g = 0; g < G; ++g) {
    if (lane == 0) {
      sm_m[warp][g] = m[g];
      sm_l[warp][g] = l[g];
    }
#pragma unroll
    for (int j = 0; j < J; ++j) sm_acc[warp][g][lane + j * kWarp] = acc[g][j];
  }
  __syncthreads();
  for (int g = 0; g < G; ++g) {
    float mx = -INFINITY;
    for (int w = 0; w < kAttentionWarps; ++w) mx = fmaxf(mx, sm_m[w][g]);
    float wsum[kAttentionWarps], total = 0.0f;
    for (int w = 0; w < kAttentionWarps; ++w) {
      wsum[w] = sm_l[w][g] > 0.0f ? expf(sm_m[w][g] - mx) : 0.0f;
      total += sm_l[w][g] * wsum[w];
    }
    const int64_t row = static_cast<int64_t>(t) * a.n_heads + h0 + g;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
      float o = 0.0f;
      for (int w = 0; w < kAttentionWarps; ++w) o += sm_acc[w][g][i] * wsum[w];
      if (partial == nullptr) {
        out[row * hd + i] = o / total;
      } else {
        float* part = partial + (row * splits + split) * (hd + 2);
        part[2 + i] = o;
        if (i == 0) {
          part[0] = total > 0.0f ? mx : -INFINITY;
          part[1] = total;
        }
      }
    }
  }
}

// Merges the splits of one (token, head): out = sum_s acc_s e^(m_s - M) / L.
template <class T = float>
__global__ void attention_merge_kernel(const T* __restrict__ partial, int splits, int hd,
                                       T* __restrict__ out) {
  const int64_t row = blockIdx.x;
  const T* base = partial + row * splits * (hd + 2);
  float mx = -INFINITY;
  for (int s = 0; s < splits; ++s) mx = fmaxf(mx, base[s * (hd + 2)]);
  for (int i = threadIdx.x; i < hd; i += blockDim.x) {
    float o = 0.0f, total = 0.0f;
    for (int s = 0; s < splits; ++s) {
      const T* part = base + s * (hd + 2);
      if (part[1] <= 0.0f) continue;  // empty split
      const float w = expf(part[0] - mx);
      total += part[1] * w;
      o += part[2 + i] * w;
    }
    out[row * hd + i] = o / total;
  }
}

}  // namespace ghostd::kernels
#endif
