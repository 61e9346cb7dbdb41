// The transformer forward pass (Llama and Qwen2) over a batch of sequences,
// expressed in Backend ops, with a paged KV cache.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "runtime/core/backend.h"
#include "runtime/model/model_config.h"
#include "runtime/core/result.h"
#include "runtime/model/weights.h"

namespace ghostd::runtime {

// KV memory of every layer: num_blocks blocks of block_size token slots.
// Block ids index it; the block manager (kv_cache.h) decides who owns which.
// Thread-safety: owned by the engine thread, like its backend.
class KvStorage {
 public:
  static size_t bytes_per_block(const ModelConfig& config, int block_size);
  static Result<KvStorage> create(Backend& backend, const ModelConfig& config, int num_blocks,
                                  int block_size);

  int num_blocks() const { return num_blocks_; }
  int block_size() const { return block_size_; }
  int kv_dim() const { return kv_dim_; }
  KvLayerView layer(int i) const { return {k_[i].as<float>(), v_[i].as<float>()}; }

 private:
  int num_blocks_ = 0;
  int block_size_ = 0;
  int kv_dim_ = 0;
  std::vector<Buffer> k_, v_;
};

// One sequence's share of a forward step.
struct SequenceInput {
  std::span<const int32_t> tokens;       // new tokens of this sequence in this step
  int32_t start_pos = 0;                 // tokens already in its KV (position of tokens[0])
  std::span<const int32_t> block_table;  // KV blocks covering [0, start_pos + tokens.size())
  bool all_logits = false;               // a logits row per new token, or only for the last
};

// Thread-safety: forward() is called from the engine thread only; the
// weights it reads are immutable.
class Model {
 public:
  // Binds the weights the config names (shapes checked) for `backend`. The
  // WeightStore must outlive the Model (CPU weights are used in place).
  static Result<std::unique_ptr<Model>> create(const ModelConfig& config,
                                               const WeightStore& weights, Backend& backend);

  const ModelConfig& config() const { return config_; }
  Backend& backend() const { return backend_; }

  // Runs one step. `logits` receives, in batch order, one row of vocab_size
  // floats per sequence (its last new token), or one per new token when
  // all_logits is set.
  Status forward(std::span<const SequenceInput> batch, KvStorage& kv, std::vector<float>& logits);

  // Rows forward() will write for this batch.
  static int logit_rows(std::span<const SequenceInput> batch);

 private:
  struct Layer {
    Weight attn_norm, q, k, v, o, q_bias, k_bias, v_bias, mlp_norm, gate, up, down;
  };

  Model(const ModelConfig& config, Backend& backend) : config_(config), backend_(backend) {}
  Status ensure_workspace(int num_tokens, int num_seqs, int table_entries, int logit_rows);

  ModelConfig config_;
  Backend& backend_;
  Weight embed_, final_norm_, lm_head_;
  std::vector<Layer> layers_;
  Buffer inv_freq_;

  // Workspace, grown on demand and reused across steps.
  int ws_tokens_ = 0, ws_seqs_ = 0, ws_table_ = 0, ws_logits_ = 0;
  Buffer x_, xn_, q_, k_, v_, attn_, gate_, up_, logits_in_, logits_out_;
  Buffer ids_, positions_, slots_, token_seq_, seq_kv_len_, seq_first_, table_start_, tables_,
      logit_idx_;
};

}  // namespace ghostd::runtime
