#include "kernels/attention.cuh"

#include <algorithm>

namespace ghostd::kernels {

namespace {
constexpr int kMaxSplits = 64;
}

int attention_splits(const AttentionArgs& a, int target_blocks) {
  const int64_t items = static_cast<int64_t>(a.num_tokens) * a.n_heads;
  if (items <= 0 || items >= target_blocks) return 1;
  return static_cast<int>(std::min<int64_t>(kMaxSplits, (target_blocks + items - 1) / items));
}

size_t attention_workspace_floats(const AttentionArgs& a, int target_blocks) {
  const int splits = attention_splits(a, target_blocks);
  if (splits == 1) return 0;
  return static_cast<size_t>(a.num_tokens) * a.n_heads * splits * (a.head_dim + 2);
}

cudaError_t paged_attention(const AttentionArgs& a, float* out, float* workspace, int target_blocks,
                            cudaStream_t stream) {
  if (a.num_tokens <= 0) return cudaSuccess;
  if (a.head_dim <= 0 || a.head_dim > kAttentionMaxHeadDim || a.n_kv_heads <= 0 ||
      a.n_heads % a.n_kv_heads != 0 || a.block_size <= 0)
    return cudaErrorInvalidValue;
  const int splits = attention_splits(a, target_blocks);
  float* partial = splits > 1 ? workspace : nullptr;
  if (splits > 1 && workspace == nullptr) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(a.num_tokens) * a.n_heads, splits);
  const int threads = kAttentionWarps * kWarp;
  switch ((a.head_dim + kWarp - 1) / kWarp) {
    case 1:
      paged_attention_kernel<1><<<grid, threads, 0, stream>>>(a, splits, out, partial);
      break;
    case 2:
      paged_attention_kernel<2><<<grid, threads, 0, stream>>>(a, splits, out, partial);
      break;
    case 3:
      paged_attention_kernel<3><<<grid, threads, 0, stream>>>(a, splits, out, partial);
      break;
    case 4:
      paged_attention_kernel<4><<<grid, threads, 0, stream>>>(a, splits, out, partial);
      break;
    case 5:
      paged_attention_kernel<5><<<grid, threads, 0, stream>>>(a, splits, out, partial);
      break;
    case 6:
      paged_attention_kernel<6><<<grid, threads, 0, stream>>>(a, splits, out, partial);
      break;
    case 7:
      paged_attention_kernel<7><<<grid, threads, 0, stream>>>(a, splits, out, partial);
      break;
    default:
      paged_attention_kernel<8><<<grid, threads, 0, stream>>>(a, splits, out, partial);
      break;
  }
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess || splits == 1) return e;
  const int merge_threads = std::min(256, ((a.head_dim + kWarp - 1) / kWarp) * kWarp);
  attention_merge_kernel<<<static_cast<unsigned>(a.num_tokens) * a.n_heads, merge_threads, 0,
                           stream>>>(partial, splits, a.head_dim, out);
  return cudaGetLastError();
}

}  // namespace ghostd::kernels
