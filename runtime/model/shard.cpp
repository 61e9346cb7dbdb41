#include "runtime/model/shard.h"

#include <algorithm>
#include <cstring>
#include <string>

namespace ghostd::runtime {

Result<Shard> plan_shard(const ModelConfig& c, int rank, int n) {
  if (n < 1 || rank < 0 || rank >= n) return Error{"tensor parallel: rank " + std::to_string(rank) + " of " + std::to_string(n)};
  Shard s;
  s.rank = rank;
  s.ranks = n;
  const std::string tp = std::to_string(n);
  if (c.num_heads % n != 0)
    return Error{"tensor parallel: " + std::to_string(c.num_heads) + " attention heads do not split over " + tp +
                 " ranks; pick a --tensor-parallel that divides " + std::to_string(c.num_heads)};
  s.heads = c.num_heads / n;
  s.head0 = rank * s.heads;
  if (c.num_kv_heads >= n) {
    if (c.num_kv_heads % n != 0)
      return Error{"tensor parallel: " + std::to_string(c.num_kv_heads) + " KV heads do not split over " + tp +
                   " ranks; pick a --tensor-parallel that divides " + std::to_string(c.num_kv_heads)};
    s.kv_heads = c.num_kv_heads / n;
    s.kv_head0 = rank * s.kv_heads;
  } else {
    // Fewer KV heads than ranks: each KV head is replicated on the ranks
    // whose query heads read it.
    if (n % c.num_kv_heads != 0)
      return Error{"tensor parallel: " + tp + " ranks cannot share " + std::to_string(c.num_kv_heads) +
                   " KV heads evenly; pick a --tensor-parallel that " + std::to_string(c.num_kv_heads) + " divides"};
    s.kv_heads = 1;
    s.kv_head0 = rank / (n / c.num_kv_heads);
  }
  if (c.intermediate_size % n != 0)
    return Error{"tensor parallel: the MLP's " + std::to_string(c.intermediate_size) + " columns do not split over " +
                 tp + " ranks; pick a --tensor-parallel that divides " + std::to_string(c.intermediate_size)};
  s.inter = c.intermediate_size / n;
  s.inter0 = rank * s.inter;
  s.vocab_stride = (c.vocab_size + n - 1) / n;
  s.vocab0 = std::min<int64_t>(c.vocab_size, rank * s.vocab_stride);
  s.vocab = std::min<int64_t>(c.vocab_size, s.vocab0 + s.vocab_stride) - s.vocab0;
  if (s.vocab <= 0)
    return Error{"tensor parallel: a vocabulary of " + std::to_string(c.vocab_size) + " tokens leaves rank " +
                 std::to_string(rank) + " of " + tp + " none"};
  return s;
}

Result<TensorView> slice_tensor(const TensorView& t, int64_t r0, int64_t rows, int64_t c0, int64_t cols,
                                std::vector<std::unique_ptr<std::byte[]>>& owned, std::vector<WeightRead>& reads) {
  const int64_t R = t.shape.size() == 2 ? t.shape[0] : 1, C = t.shape.back();
  const bool vector = t.shape.size() == 1;
  if (r0 == 0 && rows == R && c0 == 0 && cols == C) {
    reads.push_back({t.data, t.nbytes});
    return t;
  }
  const int64_t block = dtype_block_elems(t.dtype);
  if (c0 % block != 0 || cols % block != 0)
    return Error{"tensor " + t.name + ": its " + dtype_name(t.dtype) + " blocks of " + std::to_string(block) +
                 " values cannot be split at column " + std::to_string(c0) + " for tensor parallelism; pick a "
                 "smaller --tensor-parallel or an unquantized file"};
  const size_t row_bytes = dtype_bytes(t.dtype, C);
  TensorView v;
  v.name = t.name;
  v.dtype = t.dtype;
  v.shape = vector ? std::vector<int64_t>{vector ? cols : rows} : std::vector<int64_t>{rows, cols};
  if (vector) {
    v.data = t.data + dtype_bytes(t.dtype, c0);
    v.nbytes = dtype_bytes(t.dtype, cols);
    reads.push_back({v.data, v.nbytes});
    return v;
  }
  if (cols == C) {
    v.data = t.data + row_bytes * static_cast<size_t>(r0);
    v.nbytes = row_bytes * static_cast<size_t>(rows);
    reads.push_back({v.data, v.nbytes});
    return v;
  }
  const size_t seg = dtype_bytes(t.dtype, cols), off = dtype_bytes(t.dtype, c0);
  auto buf = std::make_unique<std::byte[]>(seg * static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const std::byte* src = t.data + row_bytes * static_cast<size_t>(r0 + r) + off;
    std::memcpy(buf.get() + seg * static_cast<size_t>(r), src, seg);
    reads.push_back({src, seg});
  }
  v.data = buf.get();
  v.nbytes = seg * static_cast<size_t>(rows);
  owned.push_back(std::move(buf));
  return v;
}

}  // namespace ghostd::runtime
