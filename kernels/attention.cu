#include "kernels/attention.cuh"

#include <algorithm>
#include <utility>

namespace ghostd::kernels {

namespace {

// Query heads per block, which read their KV once for all of them: the
// largest divisor of the GQA group that a kernel is built for (2..8, with
// head_dim up to 64 or 97..128), else 1. A divisor keeps a block's heads on
// one KV head (blocks start at multiples of it): StarCoder2's groups of 12
// and 9 run as blocks of 6 and 3 instead of head by head.
int heads_per_block(const AttentionArgs& a) {
  const int group = a.n_heads / a.n_kv_heads;
  const int j = (a.head_dim + kWarp - 1) / kWarp;
  if (j != 2 && j != 4) return 1;
  for (int g = std::min(group, 8); g >= 2; --g)
    if (group % g == 0) return g;
  return 1;
}

template <int J, int G>
void launch(const AttentionArgs& a, int splits, float* out, float* partial, cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>(a.num_tokens) * (a.n_heads / G), splits);
  paged_attention_kernel<J, G><<<grid, kAttentionWarps * kWarp, 0, s>>>(a, splits, out, partial);
}

template <int J, int... G>
void launch_grouped(int g, const AttentionArgs& a, int splits, float* out, float* partial,
                    cudaStream_t s, std::integer_sequence<int, G...>) {
  ((g == G + 2 ? (launch<J, G + 2>(a, splits, out, partial, s), true) : false) || ...);
}

template <int... J>
void launch_single(int j, const AttentionArgs& a, int splits, float* out, float* partial,
                   cudaStream_t s, std::integer_sequence<int, J...>) {
  ((j == J + 1 ? (launch<J + 1, 1>(a, splits, out, partial, s), true) : false) || ...);
}

}  // namespace

int attention_splits(const AttentionArgs& a) {
  return a.max_context > 0 ? attention_token_splits(a.max_context) : kAttentionMaxSplits;
}

size_t attention_workspace_floats(const AttentionArgs& a) {
  const int splits = attention_splits(a);
  if (splits == 1) return 0;
  return static_cast<size_t>(a.num_tokens) * a.n_heads * splits * (a.head_dim + 2);
}

cudaError_t paged_attention(const AttentionArgs& a, float* out, float* workspace, cudaStream_t stream) {
  if (a.num_tokens <= 0) return cudaSuccess;
  if (a.head_dim <= 0 || a.head_dim > kAttentionMaxHeadDim || a.n_kv_heads <= 0 ||
      a.n_heads % a.n_kv_heads != 0 || a.block_size <= 0)
    return cudaErrorInvalidValue;
  const int splits = attention_splits(a);
  float* partial = splits > 1 ? workspace : nullptr;
  if (splits > 1 && workspace == nullptr) return cudaErrorInvalidValue;
  const int j = (a.head_dim + kWarp - 1) / kWarp, g = heads_per_block(a);
  if (g == 1)
    launch_single(j, a, splits, out, partial, stream, std::make_integer_sequence<int, 8>{});
  else if (j == 2)
    launch_grouped<2>(g, a, splits, out, partial, stream, std::make_integer_sequence<int, 7>{});
  else
    launch_grouped<4>(g, a, splits, out, partial, stream, std::make_integer_sequence<int, 7>{});
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess || splits == 1) return e;
  const int merge_threads = std::min(256, ((a.head_dim + kWarp - 1) / kWarp) * kWarp);
  attention_merge_kernel<<<static_cast<unsigned>(a.num_tokens) * a.n_heads, merge_threads, 0,
                           stream>>>(partial, splits, a.head_dim, out);
  return cudaGetLastError();
}

}  // namespace ghostd::kernels
