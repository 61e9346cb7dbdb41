// The paged KV cache memory of a model: every layer's K and V blocks, on
// every rank of a tensor-parallel group.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "runtime/core/backend.h"
#include "runtime/core/result.h"
#include "runtime/model/model_config.h"

namespace ghostd::runtime {

class Model;

// KV memory of every layer: num_blocks blocks of block_size token slots.
// Block ids index it; the block manager (kv_cache.h) decides who owns which.
// Thread-safety: owned by the engine thread, like its backend.
// Under tensor parallelism every rank holds its own KV heads of every block,
// with the same block ids.
class KvStorage {
 public:
  static size_t bytes_per_block(const ModelConfig& config, int block_size);
  // With `scratch_block`, one block more is allocated that no block table
  // may name (num_blocks() does not count it): padding rows of captured
  // steps write and read it.
  static Result<KvStorage> create(Backend& backend, const ModelConfig& config, int num_blocks,
                                  int block_size, bool scratch_block = false);
  // The storage of every rank of `model`, on each rank's backend.
  static Result<KvStorage> create(const Model& model, int num_blocks, int block_size, bool scratch_block = false);

  int num_blocks() const { return num_blocks_; }
  int scratch_block() const { return scratch_block_; }  // -1: none
  uint64_t id() const { return id_; }  // unique per created storage (captured steps name it)
  int block_size() const { return block_size_; }
  int ranks() const { return static_cast<int>(parts_.size()); }
  int kv_dim(int rank = 0) const { return parts_[static_cast<size_t>(rank)].kv_dim; }
  KvLayerView layer(int i) const { return layer(0, i); }
  KvLayerView layer(int rank, int i) const { return parts_[static_cast<size_t>(rank)].views[static_cast<size_t>(i)]; }
  std::span<const KvLayerView> layers(int rank) const { return parts_[static_cast<size_t>(rank)].views; }

 private:
  struct Part {
    int kv_dim = 0;
    std::vector<Buffer> k, v;
    std::vector<KvLayerView> views;
  };
  // An empty storage of this shape (no parts yet), or why it cannot be.
  static Result<KvStorage> make(int num_blocks, int block_size, bool scratch_block);
  static Status add_part(KvStorage& kv, Backend& backend, int layers, int kv_dim);

  uint64_t id_ = 0;
  int num_blocks_ = 0;
  int scratch_block_ = -1;
  int block_size_ = 0;
  std::vector<Part> parts_;
};

}  // namespace ghostd::runtime
