// Paged KV-cache bookkeeping (DESIGN.md invariant 3): which device KV blocks
// exist, who holds them, and which blocks make up each sequence. No device
// memory is touched here; the model indexes its KV storage with these ids.
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "runtime/core/result.h"

namespace ghostd::runtime {

using BlockId = int32_t;

// A device-side copy of the first `n_tokens` slots of block `src` into block
// `dst` (all layers, K and V). The engine runs these before the step's forward.
struct BlockCopy {
  BlockId src = -1;
  BlockId dst = -1;
  int32_t n_tokens = 0;
  bool operator==(const BlockCopy&) const = default;
};

// Fixed pool of KV blocks with reference counts. A block is free iff its count
// is zero; shared blocks (prefix reuse) carry one reference per holder.
// Thread-safety: not thread-safe; owned by the engine thread.
class BlockPool {
 public:
  BlockPool(int num_blocks, int block_size);

  // How many blocks of `bytes_per_block` fit in `bytes` (0 when none fit).
  static int blocks_for_budget(size_t bytes, size_t bytes_per_block);

  int num_blocks() const { return static_cast<int>(ref_counts_.size()); }
  int block_size() const { return block_size_; }
  int num_free() const { return static_cast<int>(free_.size()); }
  int num_used() const { return num_blocks() - num_free(); }

  // A fresh block with one reference, or nullopt when the pool is exhausted.
  std::optional<BlockId> allocate();
  void add_ref(BlockId block);
  // Drops one reference; the block returns to the free list at zero.
  void release(BlockId block);
  int ref_count(BlockId block) const;

  // Internal accounting: free list has no duplicates, free <=> count 0.
  Status validate() const;
  // As above, and every block's count equals its number of occurrences in
  // `held` (one entry per reference any holder owns).
  Status validate(std::span<const BlockId> held) const;

 private:
  int block_size_;
  std::vector<int32_t> ref_counts_;
  std::vector<BlockId> free_;  // LIFO: recently freed blocks are reused first
};

// Block table of one sequence: blocks()[i] holds token slots
// [i * block_size, (i + 1) * block_size). Holds one reference per block.
// Invariant: blocks().size() == ceil(num_tokens() / block_size).
// Thread-safety: not thread-safe; owned by the engine thread.
class SequenceBlocks {
 public:
  SequenceBlocks() = default;
  SequenceBlocks(const SequenceBlocks&) = delete;
  SequenceBlocks& operator=(const SequenceBlocks&) = delete;
  SequenceBlocks(SequenceBlocks&&) = default;
  SequenceBlocks& operator=(SequenceBlocks&&) = default;
  // Blocks must be released explicitly (the pool is not owned).
  ~SequenceBlocks() { assert(blocks_.empty()); }

  int num_tokens() const { return num_tokens_; }
  std::span<const BlockId> blocks() const { return blocks_; }
  bool empty() const { return blocks_.empty(); }

  // Takes over one reference per block (e.g. from PrefixCache::match) covering
  // `n_tokens` tokens; the last block may be partially used and shared, in
  // which case the first append copies it. Requires an empty table.
  void adopt(std::vector<BlockId> blocks, int n_tokens, int block_size);

  // Free blocks append(n) would take, counting a copy-on-write block.
  int blocks_needed(const BlockPool& pool, int n) const;

  // Reserves slots for `n` more tokens. When the last block is partially
  // filled and shared, it is replaced by a private copy and the copy is pushed
  // to `copies`. All or nothing: returns false and changes nothing when the
  // pool lacks blocks.
  [[nodiscard]] bool append(BlockPool& pool, int n, std::vector<BlockCopy>& copies);

  // Shrinks to `n_tokens` (<= num_tokens()), releasing blocks past the end.
  // Used to roll back rejected speculative tokens.
  void truncate(BlockPool& pool, int n_tokens);

  void release(BlockPool& pool) { truncate(pool, 0); }

 private:
  std::vector<BlockId> blocks_;
  int num_tokens_ = 0;
};

}  // namespace ghostd::runtime
