// Causal attention on the CPU in work items of (token, head, span of at most
// kSpan positions), flash-decoding style: a batch-1 decode over a long
// context keeps every thread busy even with fewer heads than threads, and
// the items of a prefill cost about the same. A token's spans depend on its
// position (and window) alone, so its output is the same whatever the
// batch, the thread count, and for a draft-tree node, the path (chain or
// tree) that reached its position. A single span is one softmax over all
// positions; several are merged in order from their own maxima and sums.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/core/backend.h"
#include "runtime/cpu/gemm.h"
#include "runtime/cpu/thread_pool.h"

namespace ghostd::runtime::cpu {

// Thread-safety: one owner thread (the backend's); run's items go to the pool.
class SpanAttention {
 public:
  static constexpr int kSpan = 256;

  // Backend::attention's contract (runtime/core/backend.h).
  void run(ThreadPool& pool, const Kernels& kernels, const float* q, const BatchView& batch,
           const AttentionShape& shape, KvLayerView layer, float* out);

 private:
  // One item: token t, heads [h0, h0 + heads) of one KV head, positions of
  // span `span`. With no partial (the token's only span) the normalized
  // outputs; else each head's max, sum of exponentials and unnormalized
  // values into partial (head h0's; the next heads' partial_stride apart).
  static void span(const Kernels& kernels, const float* q, const BatchView& batch, const AttentionShape& shape,
                   KvLayerView layer, int t, int h0, int heads, int span, float* partial, int64_t partial_stride,
                   float* out);
  // out = the softmax-weighted values of `spans` partials ([max, sum,
  // values[hd]] each), rescaled to the largest max and added in span order.
  static void merge(const float* partial, int spans, int hd, float* out);

  // The item layout and span partials (grown, never shrunk: no allocation
  // in steady state).
  std::vector<int64_t> first_, partial_first_;
  std::vector<int> multi_;
  std::vector<float> partial_;
};

}  // namespace ghostd::runtime::cpu
