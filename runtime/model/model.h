// The transformer forward pass (Llama, Qwen2, StarCoder2, Gemma) over a batch
// of sequences, expressed in Backend ops, with a paged KV cache.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <vector>

#include "runtime/core/backend.h"
#include "runtime/model/model_config.h"
#include "runtime/core/result.h"
#include "runtime/model/kv_storage.h"
#include "runtime/model/shard.h"
#include "runtime/model/weights.h"
#include "runtime/parallel/rank_threads.h"

namespace ghostd::runtime {

// The largest step a model is prepared for: every workspace (device buffers,
// host staging) is sized from it once, by Model::reserve.
struct StepCapacity {
  int max_tokens = 0;         // new tokens per step: prefill + decode + verify
  int max_seqs = 0;           // sequences per step
  int max_table_entries = 0;  // block-table entries over all sequences of a step
  int max_logit_rows = 0;     // rows whose logits a step computes
};

// One sequence's share of a forward step.
struct SequenceInput {
  std::span<const int32_t> tokens;       // new tokens of this sequence in this step
  int32_t start_pos = 0;                 // tokens already in its KV (position of tokens[0])
  std::span<const int32_t> block_table;  // KV blocks covering [0, start_pos + tokens.size())
  bool all_logits = false;               // a logits row per new token, or only for the last
  // Draft-tree verify (empty: the tokens follow each other): the new token
  // each new token follows, -1 for tokens[0], else an earlier index. Token i
  // sits at position start_pos + its depth, in KV slot start_pos + i, and
  // attends to the context and its ancestors only (at most 64 tokens).
  std::span<const int32_t> tree_parents;
};

// Thread-safety: forward() is called from the engine thread only; the
// weights it reads are immutable.
class Model {
 public:
  // Binds the weights the config names (shapes checked) for `backend`. The
  // WeightStore must outlive the Model (CPU weights are used in place).
  static Result<std::unique_ptr<Model>> create(const ModelConfig& config,
                                               const WeightStore& weights, Backend& backend);
  // Tensor parallel over backends.size() ranks, rank r on backends[r] with
  // comms[r] (one communicator per rank of one group; empty for one rank).
  // Each rank binds only its slices of the weights. The backends must
  // outlive the Model; steps run on one thread per rank.
  static Result<std::unique_ptr<Model>> create(const ModelConfig& config, const WeightStore& weights,
                                               std::span<Backend* const> backends,
                                               std::span<Communicator* const> comms);

  const ModelConfig& config() const { return config_; }
  // Rank 0's backend (the only one without tensor parallelism).
  Backend& backend() const { return ranks_[0]->backend; }
  int ranks() const { return static_cast<int>(ranks_.size()); }
  Backend& backend(int rank) const { return ranks_[static_cast<size_t>(rank)]->backend; }
  const Shard& shard(int rank) const { return ranks_[static_cast<size_t>(rank)]->shard; }
  const std::vector<WeightRead>& weight_reads(int rank) const { return ranks_[static_cast<size_t>(rank)]->reads; }
  // KV bytes one block takes on each rank (its own KV heads).
  size_t kv_bytes_per_block(int block_size) const;
  // The least free memory over the ranks' devices (0: unknown, the CPU).
  size_t free_memory() const;
  // Empty while every rank can run; else why one cannot (a sticky device
  // error, a failed collective).
  std::string fatal_error() const;
  // Copy-on-write block copies on every rank (Backend::copy_kv_blocks).
  void copy_kv_blocks(KvStorage& kv, std::span<const KvBlockCopy> copies);
  // KV slot copies in order on every rank (an accepted tree path moved into
  // place): Backend::copy_kv_blocks with slots for blocks.
  void copy_kv_slots(KvStorage& kv, std::span<const KvBlockCopy> copies);

  // Allocates every workspace a step up to `cap` needs: the backend's
  // scratch, the activations, the logits and one host staging block with its
  // device copy. After it, prepare/run/argmax/download_logits never allocate.
  // One engine drives a model at a time: the workspaces, the staging block
  // and the captured steps are that engine's. Engine::create attaches (and
  // fails while another engine is attached), shutdown detaches.
  bool try_attach() { return !attached_.exchange(true, std::memory_order_acq_rel); }
  void detach() { attached_.store(false, std::memory_order_release); }

  // Called once by Engine::create (before the KV budget is taken from what is
  // left); calling it again with a larger capacity reallocates.
  Status reserve(const StepCapacity& cap);
  const StepCapacity& capacity() const { return cap_; }

  // A step in two halves. prepare: validate the batch and flatten it into the
  // host staging block (token ids, positions, KV slots, block tables, the rows
  // that need logits); an error names the sequence and leaves nothing queued.
  // run: one upload of the staging block, the layer loop, and the final norm
  // and head for the logits rows, queued on the backend (no synchronize).
  Status prepare(std::span<const SequenceInput> batch, const KvStorage& kv);
  Status run(KvStorage& kv);
  // Logits rows of the prepared step, in batch order: one per sequence (its
  // last new token), or one per new token when all_logits is set.
  int prepared_logit_rows() const { return num_rows_; }
  // After run: the argmax of every logits row, computed on the device; only
  // the ids are downloaded. `out` holds prepared_logit_rows() entries.
  Status argmax(std::span<int32_t> out);
  // After run: logits rows [first, first + rows) to host memory.
  Status download_logits(int first, int rows, float* out);

  // Captured steps (CUDA graphs): a pure decode step (one new token per
  // sequence) is padded to a bucket of 1, 2, 4, 8, ... sequences with rows
  // that write and read the KV storage's scratch block, captured once per
  // bucket and replayed. Kernel choices then follow the bucket, never the
  // live count. Needs a KvStorage with a scratch block; off by default.
  void set_step_graphs(bool on) { graphs_ = on; }
  int captured_steps() const { return static_cast<int>(ranks_[0]->graph_ids.size()); }
  int replayed_steps() const { return ranks_[0]->replays; }

  // prepare + run + every logits row downloaded (tools, tests). `logits` is
  // the caller's: it is resized to rows * vocab_size.
  Status forward(std::span<const SequenceInput> batch, KvStorage& kv, std::vector<float>& logits);

  // Rows forward() will write for this batch.
  static int logit_rows(std::span<const SequenceInput> batch);
  // The capacity one batch needs (tools size reserve() with it).
  static StepCapacity capacity_for(std::span<const SequenceInput> batch);

 private:
  // Biases and gate are empty where the architecture has none (StarCoder2's
  // c_fc / c_proj are up / down, with no gate).
  struct Layer {
    Weight attn_norm, attn_norm_bias, q, k, v, o, q_bias, k_bias, v_bias, o_bias, mlp_norm, mlp_norm_bias, gate,
        up, up_bias, down, down_bias;
  };

  // The staging block: int32 arrays at fixed offsets set by the capacity,
  // so device pointers into its copy stay the same from step to step.
  struct Staging {
    size_t ids = 0, positions = 0, slots = 0, token_seq = 0, kv_len = 0, first = 0, table_start = 0,
           tree_mask = 0, tables = 0, logit_rows = 0, argmax = 0, total = 0;
  };

  // One rank: its backend, communicator, weight slices, workspaces and
  // captured steps. Touched by its rank thread during a step, else by the
  // engine thread.
  struct Rank {
    explicit Rank(Backend& b) : backend(b) {}
    Backend& backend;
    Communicator* comm = nullptr;  // null with one rank
    Shard shard;
    Weight embed, final_norm, final_norm_bias, lm_head;
    std::vector<Layer> layers;
    Buffer inv_freq, staging;
    Buffer x, xn, q, k, v, attn, gate, up, logits_in, logits_local, gathered, logits_out;
    std::vector<WeightRead> reads;
    // Captured steps of one KV storage by bucket; buckets whose capture
    // failed run eagerly. A new storage or reserve() (new pointers) drops them.
    uint64_t graph_kv = 0;
    std::map<int, int> graph_ids;
    std::set<int> graph_failed;
    int replays = 0;
  };

  explicit Model(const ModelConfig& config) : config_(config) {}
  Status bind_rank(Rank& rank, const WeightStore& ws);
  Status reserve_rank(Rank& rank, const StepCapacity& cap, const Staging& layout);
  Status run_rank(Rank& rank, KvStorage& kv);
  // The layer loop and the head over the staged step (T tokens, R logits rows).
  void queue_step(Rank& rank, KvStorage& kv, int T, int S, int R, int max_kv_len);
  // The config's norm (RMSNorm or LayerNorm with bias), plain and fused with
  // the residual add before it.
  void norm(Backend& be, const float* x, const Weight& w, const Weight& b, int rows, float* out);
  void add_norm(Backend& be, float* x, const float* y, const Weight& w, const Weight& b, int rows, float* out);
  // Binds a norm weight; Gemma's HF weights become 1 + w here (see
  // ModelConfig::norm_weight_offset), kept in host_weights_.
  Result<Weight> bind_norm(Rank& rank, const WeightStore& ws, const std::string& name);
  void release_graphs(Rank& rank);

  ModelConfig config_;
  std::vector<std::unique_ptr<Rank>> ranks_;
  std::unique_ptr<RankThreads> threads_;  // with more than one rank
  std::vector<std::unique_ptr<float[]>> host_weights_;   // weights made at load time (CPU uses them in place)
  std::vector<std::unique_ptr<std::byte[]>> host_slices_;  // column slices, copied out of the files

  StepCapacity cap_;
  Staging layout_;
  std::vector<int32_t> host_;  // staging block, layout_.total entries (each rank has its device copy)
  // The prepared step.
  int num_tokens_ = 0, num_seqs_ = 0, num_table_ = 0, num_rows_ = 0, run_rows_ = 0, max_kv_len_ = 0;
  size_t upload_bytes_ = 0;
  bool ran_ = false;
  bool graphs_ = false;
  int bucket_ = 0;  // the prepared step's bucket, 0: eager
  bool has_tree_ = false;  // the prepared step has draft-tree tokens
  std::atomic<bool> attached_{false};
};

}  // namespace ghostd::runtime
