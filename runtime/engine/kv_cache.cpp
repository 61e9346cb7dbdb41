#include "runtime/engine/kv_cache.h"

#include <cassert>
#include <string>

namespace ghostd::runtime {

BlockPool::BlockPool(int num_blocks, int block_size)
    : block_size_(block_size), ref_counts_(static_cast<size_t>(num_blocks), 0) {
  assert(num_blocks >= 0 && block_size > 0);
  free_.reserve(ref_counts_.size());
  // Push in reverse so allocation hands out 0, 1, 2, ... (easier to read in logs).
  for (int b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

int BlockPool::blocks_for_budget(size_t bytes, size_t bytes_per_block) {
  if (bytes_per_block == 0) return 0;
  size_t n = bytes / bytes_per_block;
  constexpr size_t kMax = static_cast<size_t>(INT32_MAX);
  return static_cast<int>(n > kMax ? kMax : n);
}

std::optional<BlockId> BlockPool::allocate() {
  if (free_.empty()) return std::nullopt;
  BlockId b = free_.back();
  free_.pop_back();
  assert(ref_counts_[b] == 0);
  ref_counts_[b] = 1;
  return b;
}

void BlockPool::add_ref(BlockId block) {
  assert(block >= 0 && block < num_blocks());
  assert(ref_counts_[block] > 0 && "add_ref on a free block");
  ++ref_counts_[block];
}

void BlockPool::release(BlockId block) {
  assert(block >= 0 && block < num_blocks());
  assert(ref_counts_[block] > 0 && "release of a free block");
  if (--ref_counts_[block] == 0) free_.push_back(block);
}

int BlockPool::ref_count(BlockId block) const {
  assert(block >= 0 && block < num_blocks());
  return ref_counts_[block];
}

Status BlockPool::validate() const {
  std::vector<uint8_t> seen(ref_counts_.size(), 0);
  for (BlockId b : free_) {
    if (b < 0 || b >= num_blocks()) {
      return make_error("BlockPool: free list holds out-of-range block " + std::to_string(b));
    }
    if (seen[b]) return make_error("BlockPool: block " + std::to_string(b) + " is free twice");
    seen[b] = 1;
    if (ref_counts_[b] != 0) {
      return make_error("BlockPool: free block " + std::to_string(b) + " has ref count " +
                        std::to_string(ref_counts_[b]) + ", expected 0");
    }
  }
  for (int b = 0; b < num_blocks(); ++b) {
    if (ref_counts_[b] < 0) {
      return make_error("BlockPool: block " + std::to_string(b) + " has negative ref count");
    }
    if (ref_counts_[b] == 0 && !seen[b]) {
      return make_error("BlockPool: block " + std::to_string(b) +
                        " has ref count 0 but is not on the free list (leak)");
    }
  }
  return {};
}

Status BlockPool::validate(std::span<const BlockId> held) const {
  GHOSTD_TRY_STATUS(validate());
  std::vector<int32_t> counts(ref_counts_.size(), 0);
  for (BlockId b : held) {
    if (b < 0 || b >= num_blocks()) {
      return make_error("BlockPool: a holder references out-of-range block " + std::to_string(b));
    }
    ++counts[b];
  }
  for (int b = 0; b < num_blocks(); ++b) {
    if (counts[b] != ref_counts_[b]) {
      return make_error("BlockPool: block " + std::to_string(b) + " has ref count " +
                        std::to_string(ref_counts_[b]) + " but " + std::to_string(counts[b]) +
                        " holders");
    }
  }
  return {};
}

void SequenceBlocks::adopt(std::vector<BlockId> blocks, int n_tokens, int block_size) {
  assert(blocks_.empty() && num_tokens_ == 0);
  assert(static_cast<int>(blocks.size()) == (n_tokens + block_size - 1) / block_size);
  (void)block_size;
  blocks_ = std::move(blocks);
  num_tokens_ = n_tokens;
}

int SequenceBlocks::blocks_needed(const BlockPool& pool, int n) const {
  if (n <= 0) return 0;
  const int bs = pool.block_size();
  int total = (num_tokens_ + n + bs - 1) / bs;
  int fresh = total - static_cast<int>(blocks_.size());
  bool cow = num_tokens_ % bs != 0 && pool.ref_count(blocks_.back()) > 1;
  return fresh + (cow ? 1 : 0);
}

bool SequenceBlocks::append(BlockPool& pool, int n, std::vector<BlockCopy>& copies) {
  assert(n >= 0);
  if (n == 0) return true;
  if (blocks_needed(pool, n) > pool.num_free()) return false;
  const int bs = pool.block_size();
  const int used_in_last = num_tokens_ % bs;
  if (used_in_last != 0 && pool.ref_count(blocks_.back()) > 1) {
    // Writing into a shared block would corrupt the other holders' KV.
    BlockId dst = *pool.allocate();
    copies.push_back(BlockCopy{blocks_.back(), dst, used_in_last});
    pool.release(blocks_.back());
    blocks_.back() = dst;
  }
  num_tokens_ += n;
  const size_t total = static_cast<size_t>((num_tokens_ + bs - 1) / bs);
  while (blocks_.size() < total) blocks_.push_back(*pool.allocate());
  return true;
}

void SequenceBlocks::truncate(BlockPool& pool, int n_tokens) {
  assert(n_tokens >= 0 && n_tokens <= num_tokens_);
  const int bs = pool.block_size();
  const size_t keep = static_cast<size_t>((n_tokens + bs - 1) / bs);
  while (blocks_.size() > keep) {
    pool.release(blocks_.back());
    blocks_.pop_back();
  }
  num_tokens_ = n_tokens;
}

}  // namespace ghostd::runtime
