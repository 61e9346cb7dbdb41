#include "runtime/cpu/span_attention.h"

#include <algorithm>
#include <cmath>

#include "runtime/core/tree_mask.h"

namespace ghostd::runtime::cpu {

void SpanAttention::run(ThreadPool& pool, const Kernels& kernels, const float* q, const BatchView& batch,
                        const AttentionShape& shape, KvLayerView layer, float* out) {
  const int hd = shape.head_dim, nh = shape.n_heads, T = batch.num_tokens;
  auto span_count = [&](int t) {
    const int n_ctx = batch.positions[t] + 1;
    const int lo = shape.window > 0 ? std::max(0, n_ctx - shape.window) : 0;
    return std::max(1, (n_ctx - lo + kSpan - 1) / kSpan);
  };
  // A GQA group's heads share their K and V rows: an item takes `hg` of them
  // (a divisor of the group), as many as leave at least 4 items per thread
  // (a decode over a short context has few). A head's result does not depend
  // on hg (gemm.h's span passes).
  const int group = nh / shape.n_kv_heads;
  int64_t token_spans = 0;
  for (int t = 0; t < T; ++t) token_spans += span_count(t);
  int hg = group;
  while (hg > 1 && token_spans * (nh / hg) < 4 * static_cast<int64_t>(pool.size())) {
    do --hg;
    while (group % hg != 0);
  }
  const int chunks = nh / hg;
  // Items laid out token by token, then head chunk by chunk, then span by
  // span; tokens with several spans also get partial results (max, sum,
  // values) per head and span.
  first_.resize(static_cast<size_t>(T) + 1);
  partial_first_.resize(static_cast<size_t>(T));
  multi_.clear();
  int64_t items = 0, partials = 0;
  for (int t = 0; t < T; ++t) {
    const int spans = span_count(t);
    first_[t] = items;
    partial_first_[t] = partials;
    items += static_cast<int64_t>(spans) * chunks;
    if (spans > 1) {
      partials += static_cast<int64_t>(spans) * nh;
      multi_.push_back(t);
    }
  }
  first_[T] = items;
  const size_t partial_floats = static_cast<size_t>(partials) * (hd + 2);
  if (partial_.size() < partial_floats) partial_.resize(partial_floats);
  // The items' lengths vary (a prefill's early tokens see few positions, its
  // late ones two spans each): in equal contiguous chunks the thread with
  // the early tokens waited for the other. The threads take pieces of about
  // an eighth of their share as they go instead.
  pool.parallel_pieces(items, std::max<int64_t>(1, items / (8 * pool.size())), [&](int64_t b, int64_t e) {
    int t = static_cast<int>(std::upper_bound(first_.begin(), first_.begin() + T, b) - first_.begin()) - 1;
    for (int64_t item = b; item < e; ++item) {
      while (item >= first_[t + 1]) ++t;
      const int spans = span_count(t);
      const int64_t local = item - first_[t];
      const int h0 = static_cast<int>(local / spans) * hg, sp = static_cast<int>(local % spans);
      float* partial = spans > 1
                           ? partial_.data() + (partial_first_[t] + static_cast<int64_t>(h0) * spans + sp) * (hd + 2)
                           : nullptr;
      span(kernels, q, batch, shape, layer, t, h0, hg, sp, partial, static_cast<int64_t>(spans) * (hd + 2), out);
    }
  });
  if (multi_.empty()) return;
  const int64_t merges = static_cast<int64_t>(multi_.size()) * nh;
  const int64_t merge_floats = static_cast<int64_t>(span_count(multi_.back())) * hd;
  pool.parallel_for(merges, std::max<int64_t>(1, kLightGrain / merge_floats), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int t = multi_[static_cast<size_t>(i / nh)], h = static_cast<int>(i % nh);
      const int spans = span_count(t);
      const float* partial = partial_.data() + (partial_first_[t] + static_cast<int64_t>(h) * spans) * (hd + 2);
      merge(partial, spans, hd, out + (static_cast<int64_t>(t) * nh + h) * hd);
    }
  });
}

void SpanAttention::span(const Kernels& kernels, const float* q, const BatchView& batch, const AttentionShape& shape,
                         KvLayerView layer, int t, int h0, int heads, int span, float* partial, int64_t partial_stride,
                         float* out) {
  thread_local std::vector<float> scores;  // kept per thread: no allocation per step
  thread_local std::vector<int64_t> rows;  // the positions' KV rows (floats from the layer's start)
  const int hd = shape.head_dim, nh = shape.n_heads, group = shape.n_heads / shape.n_kv_heads;
  const int64_t kv_dim = static_cast<int64_t>(shape.n_kv_heads) * hd;
  const int64_t q_dim = static_cast<int64_t>(nh) * hd;
  const int s = batch.token_seq[t];
  const int n_ctx = batch.positions[t] + 1;
  const int lo = shape.window > 0 ? std::max(0, n_ctx - shape.window) : 0;  // first attended position
  const int p0 = lo + span * kSpan, p1 = std::min(n_ctx, p0 + kSpan), count = p1 - p0;
  const int32_t* table = batch.block_tables + batch.block_table_start[s];
  const float* qv = q + t * q_dim + static_cast<int64_t>(h0) * hd;
  const int64_t head_off = static_cast<int64_t>(h0 / group) * hd;  // the heads share one KV head
  // A draft-tree token reads its ancestors' KV at the positions past the
  // context; the order of the sums is that of a chain.
  const uint64_t mask = batch.tree_mask != nullptr ? batch.tree_mask[t] : 0;
  const int base = mask != 0 ? tree_base(mask, batch.positions[t]) : n_ctx;
  rows.resize(static_cast<size_t>(count));
  scores.resize(static_cast<size_t>(count) * heads);
  for (int p = p0; p < p1; ++p) {
    const int i = tree_kv_index(mask, base, p);
    const int64_t slot = static_cast<int64_t>(table[i / batch.block_size]) * batch.block_size + i % batch.block_size;
    rows[p - p0] = slot * kv_dim + head_off;
  }
  kernels.span_scores(qv, heads, layer.k, rows.data(), count, hd, scores.data(), count);
  float* o = partial != nullptr ? partial + 2 : out + t * q_dim + static_cast<int64_t>(h0) * hd;
  const int64_t o_stride = partial != nullptr ? partial_stride : hd;
  for (int j = 0; j < heads; ++j) {
    float* sc = scores.data() + static_cast<int64_t>(j) * count;
    float mx, sum;
    kernels.span_softmax(sc, count, shape.scale, &mx, &sum);
    std::fill(o + j * o_stride, o + j * o_stride + hd, 0.0f);
    if (partial == nullptr) {
      const float inv = 1.0f / sum;
      for (int i = 0; i < count; ++i) sc[i] *= inv;
    } else {
      partial[j * partial_stride] = mx;
      partial[j * partial_stride + 1] = sum;
    }
  }
  kernels.span_values(scores.data(), count, heads, layer.v, rows.data(), count, hd, o, o_stride);
}

void SpanAttention::merge(const float* partial, int spans, int hd, float* out) {
  const int64_t stride = hd + 2;
  float mx = -INFINITY;
  for (int i = 0; i < spans; ++i) mx = std::max(mx, partial[i * stride]);
  float sum = 0;
  for (int i = 0; i < spans; ++i) sum += partial[i * stride + 1] * std::exp(partial[i * stride] - mx);
  const float inv = 1.0f / sum;
  std::fill(out, out + hd, 0.0f);
  for (int i = 0; i < spans; ++i) {
    const float w = std::exp(partial[i * stride] - mx) * inv;
    const float* v = partial + i * stride + 2;
    for (int d = 0; d < hd; ++d) out[d] += w * v[d];
  }
}

}  // namespace ghostd::runtime::cpu
