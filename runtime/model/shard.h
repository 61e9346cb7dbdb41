// How a model splits over a tensor-parallel group: which heads, MLP columns
// and vocabulary rows each rank holds, and the slices of weight tensors it
// binds (row slices in place, column slices copied out of the file).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/core/result.h"
#include "runtime/core/tensor.h"
#include "runtime/model/model_config.h"

namespace ghostd::runtime {

// What one rank of a tensor-parallel group holds: a contiguous range of
// query heads, of KV heads (one replicated head per rank group when there
// are fewer KV heads than ranks), of MLP columns and of vocabulary rows.
// Column-parallel Q/K/V, gate/up and lm_head; row-parallel O and down,
// summed over ranks by one all-reduce each per layer.
struct Shard {
  int rank = 0, ranks = 1;
  int heads = 0, head0 = 0;        // query heads [head0, head0 + heads)
  int kv_heads = 0, kv_head0 = 0;  // KV heads [kv_head0, kv_head0 + kv_heads)
  int64_t inter = 0, inter0 = 0;   // MLP intermediate columns
  int64_t vocab = 0, vocab0 = 0;   // embedding and lm_head rows
  int64_t vocab_stride = 0;        // rows of the largest slice (the all-gather's unit)
};

// Rank `rank` of `ranks`; an error says what does not divide and what to
// change.
Result<Shard> plan_shard(const ModelConfig& config, int rank, int ranks);

// Bytes of the weight files a rank's weights were bound from: a sharded rank
// reads only its slices (tests check this through these records).
struct WeightRead {
  const std::byte* data = nullptr;
  size_t bytes = 0;
};

// Rows [r0, r0 + rows) and columns [c0, c0 + cols) of a [R, C] tensor (a
// vector is one row). Row slices are views into the file; a column slice is
// copied row segment by row segment into `owned`, so only its bytes are
// read. Each range read is appended to `reads`. Block-quantized rows split
// on block boundaries only (an error names the tensor otherwise).
Result<TensorView> slice_tensor(const TensorView& t, int64_t r0, int64_t rows, int64_t c0, int64_t cols,
                                std::vector<std::unique_ptr<std::byte[]>>& owned, std::vector<WeightRead>& reads);

}  // namespace ghostd::runtime
