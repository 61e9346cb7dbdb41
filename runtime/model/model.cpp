#include "runtime/model/model.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <string>

#include <spdlog/spdlog.h>

#include "runtime/parallel/communicator.h"

namespace ghostd::runtime {

Result<std::unique_ptr<Model>> Model::create(const ModelConfig& c, const WeightStore& ws, Backend& backend) {
  Backend* one[] = {&backend};
  return create(c, ws, one, {});
}

Result<std::unique_ptr<Model>> Model::create(const ModelConfig& c, const WeightStore& ws,
                                             std::span<Backend* const> backends,
                                             std::span<Communicator* const> comms) {
  if (c.num_heads <= 0 || c.num_kv_heads <= 0 || c.num_heads % c.num_kv_heads != 0)
    return Error{"model config: num_attention_heads must be a multiple of num_key_value_heads"};
  if (c.head_dim % 2 != 0) return Error{"model config: head_dim must be even for RoPE"};
  if (c.head_dim > 512) return Error{"model config: head_dim " + std::to_string(c.head_dim) + " is above the supported 512"};
  const int n = static_cast<int>(backends.size());
  if (n < 1) return Error{"model: no backend"};
  if ((n > 1 || !comms.empty()) && comms.size() != backends.size())
    return Error{"model: " + std::to_string(n) + " ranks need as many communicators, got " +
                 std::to_string(comms.size())};
  std::unique_ptr<Model> m(new Model(c));
  for (int r = 0; r < n; ++r) {
    auto rank = std::make_unique<Rank>(*backends[static_cast<size_t>(r)]);
    if (!comms.empty()) {  // one rank with a communicator runs the sharded path too
      rank->comm = comms[static_cast<size_t>(r)];
      if (rank->comm == nullptr || rank->comm->size() != n || rank->comm->rank() != r)
        return Error{"model: communicator " + std::to_string(r) + " is not rank " + std::to_string(r) + " of " +
                     std::to_string(n)};
    }
    auto shard = plan_shard(c, r, n);
    if (!shard) return shard.error();
    rank->shard = *shard;
    Status st = m->bind_rank(*rank, ws);
    if (!st.ok()) return n == 1 ? st.error() : Error{"rank " + std::to_string(r) + ": " + st.message()};
    m->ranks_.push_back(std::move(rank));
  }
  if (n > 1) m->threads_ = std::make_unique<RankThreads>(n);
  return m;
}

Status Model::bind_rank(Rank& rk, const WeightStore& ws) {
  const ModelConfig& c = config_;
  Backend& backend = rk.backend;
  const Shard& sh = rk.shard;
  const int64_t H = c.hidden_size, V = c.vocab_size, I = c.intermediate_size, hd = c.head_dim;
  const int64_t QD = static_cast<int64_t>(c.num_heads) * hd;
  const int64_t KD = static_cast<int64_t>(c.num_kv_heads) * hd;
  // Local extents: query rows, KV rows, MLP columns, vocabulary rows.
  const int64_t q0 = sh.head0 * hd, qn = sh.heads * hd, k0 = sh.kv_head0 * hd, kn = sh.kv_heads * hd;
  const int64_t i0 = sh.inter0, in = sh.inter, v0 = sh.vocab0, vn = sh.vocab;
  const bool lead = sh.rank == 0;  // adds the biases of row-parallel layers (once, before the sum)

  // bind(name, full shape, rows [r0, r0 + rows), columns [c0, c0 + cols)).
  auto bind = [&](Weight& dst, const std::string& name, std::vector<int64_t> shape, int64_t r0, int64_t rows,
                  int64_t c0, int64_t cols) -> Status {
    auto t = ws.require(name, std::move(shape));
    if (!t) return t.error();
    auto v = slice_tensor(**t, r0, rows, c0, cols, host_slices_, rk.reads);
    if (!v) return v.error();
    auto w = backend.load_weight(*v);
    if (!w) return w.error();
    dst = *w;
    return {};
  };
  auto rows_of = [&](Weight& dst, const std::string& name, int64_t R, int64_t C, int64_t r0, int64_t rows) {
    return bind(dst, name, {R, C}, r0, rows, 0, C);
  };
  auto cols_of = [&](Weight& dst, const std::string& name, int64_t R, int64_t C, int64_t c0, int64_t cols) {
    return bind(dst, name, {R, C}, 0, R, c0, cols);
  };
  auto vec = [&](Weight& dst, const std::string& name, int64_t N, int64_t b, int64_t len) {
    return bind(dst, name, {N}, 0, 1, b, len);
  };
  auto norm = [&](Weight& dst, const std::string& name) -> Status {
    auto w = bind_norm(rk, ws, name);
    if (!w) return w.error();
    dst = *w;
    return {};
  };

  const bool layer_norm = c.norm == NormType::kLayer;
  GHOSTD_TRY_STATUS(rows_of(rk.embed, "model.embed_tokens.weight", V, H, v0, vn));
  GHOSTD_TRY_STATUS(norm(rk.final_norm, "model.norm.weight"));
  if (layer_norm) GHOSTD_TRY_STATUS(vec(rk.final_norm_bias, "model.norm.bias", H, 0, H));
  if (c.tie_word_embeddings && !ws.find("lm_head.weight")) {
    rk.lm_head = rk.embed;
  } else {
    GHOSTD_TRY_STATUS(rows_of(rk.lm_head, "lm_head.weight", V, H, v0, vn));
  }
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    Layer L;
    GHOSTD_TRY_STATUS(norm(L.attn_norm, p + "input_layernorm.weight"));
    if (layer_norm) GHOSTD_TRY_STATUS(vec(L.attn_norm_bias, p + "input_layernorm.bias", H, 0, H));
    GHOSTD_TRY_STATUS(rows_of(L.q, p + "self_attn.q_proj.weight", QD, H, q0, qn));
    GHOSTD_TRY_STATUS(rows_of(L.k, p + "self_attn.k_proj.weight", KD, H, k0, kn));
    GHOSTD_TRY_STATUS(rows_of(L.v, p + "self_attn.v_proj.weight", KD, H, k0, kn));
    GHOSTD_TRY_STATUS(cols_of(L.o, p + "self_attn.o_proj.weight", H, QD, q0, qn));
    if (c.attention_bias) {
      GHOSTD_TRY_STATUS(vec(L.q_bias, p + "self_attn.q_proj.bias", QD, q0, qn));
      GHOSTD_TRY_STATUS(vec(L.k_bias, p + "self_attn.k_proj.bias", KD, k0, kn));
      GHOSTD_TRY_STATUS(vec(L.v_bias, p + "self_attn.v_proj.bias", KD, k0, kn));
    }
    if (c.dense_bias && lead) GHOSTD_TRY_STATUS(vec(L.o_bias, p + "self_attn.o_proj.bias", H, 0, H));
    GHOSTD_TRY_STATUS(norm(L.mlp_norm, p + "post_attention_layernorm.weight"));
    if (layer_norm) GHOSTD_TRY_STATUS(vec(L.mlp_norm_bias, p + "post_attention_layernorm.bias", H, 0, H));
    if (c.mlp == MlpType::kGelu) {
      GHOSTD_TRY_STATUS(rows_of(L.up, p + "mlp.c_fc.weight", I, H, i0, in));
      GHOSTD_TRY_STATUS(cols_of(L.down, p + "mlp.c_proj.weight", H, I, i0, in));
      if (c.dense_bias) {
        GHOSTD_TRY_STATUS(vec(L.up_bias, p + "mlp.c_fc.bias", I, i0, in));
        if (lead) GHOSTD_TRY_STATUS(vec(L.down_bias, p + "mlp.c_proj.bias", H, 0, H));
      }
    } else {
      GHOSTD_TRY_STATUS(rows_of(L.gate, p + "mlp.gate_proj.weight", I, H, i0, in));
      GHOSTD_TRY_STATUS(rows_of(L.up, p + "mlp.up_proj.weight", I, H, i0, in));
      GHOSTD_TRY_STATUS(cols_of(L.down, p + "mlp.down_proj.weight", H, I, i0, in));
    }
    rk.layers.push_back(L);
  }

  std::vector<float> inv = rope_inv_freq(c);
  auto buf = backend.alloc(inv.size() * sizeof(float));
  if (!buf) return buf.error();
  backend.upload(buf->get(), inv.data(), inv.size() * sizeof(float));
  rk.inv_freq = std::move(*buf);
  return {};
}

size_t Model::kv_bytes_per_block(int block_size) const {
  size_t most = 0;
  for (const auto& r : ranks_)
    most = std::max(most, static_cast<size_t>(2) * config_.num_layers * block_size * r->shard.kv_heads *
                              config_.head_dim * sizeof(float));
  return most;
}

size_t Model::free_memory() const {
  size_t least = 0;
  for (size_t r = 0; r < ranks_.size(); ++r) {
    const size_t f = ranks_[r]->backend.free_memory();
    least = r == 0 ? f : std::min(least, f);
  }
  return least;
}

std::string Model::fatal_error() const {
  for (const auto& r : ranks_) {
    std::string f = r->backend.fatal_error();
    if (!f.empty()) return ranks_.size() == 1 ? f : "rank " + std::to_string(r->shard.rank) + ": " + f;
    if (r->comm != nullptr) {
      if (std::string why = r->comm->failure(); !why.empty()) return "tensor-parallel group failed: " + why;
    }
  }
  return {};
}

void Model::copy_kv_blocks(KvStorage& kv, std::span<const KvBlockCopy> copies) {
  for (const auto& r : ranks_)
    r->backend.copy_kv_blocks(kv.layers(r->shard.rank), copies, kv.block_size(), kv.kv_dim(r->shard.rank));
}

void Model::copy_kv_slots(KvStorage& kv, std::span<const KvBlockCopy> copies) {
  if (copies.empty()) return;
  for (const auto& r : ranks_) r->backend.copy_kv_blocks(kv.layers(r->shard.rank), copies, 1, kv.kv_dim(r->shard.rank));
}

Result<Weight> Model::bind_norm(Rank& rk, const WeightStore& ws, const std::string& name) {
  auto t = ws.require(name, {config_.hidden_size});
  if (!t) return t.error();
  rk.reads.push_back({(*t)->data, (*t)->nbytes});  // replicated on every rank
  if (!config_.norm_weight_offset) return rk.backend.load_weight(**t);
  // Gemma: x * (1 + w). Adding 1 once here, in float32 as transformers does
  // before multiplying, gives the same products as adding it in the op.
  const int64_t n = config_.hidden_size;
  auto data = std::make_unique<float[]>(static_cast<size_t>(n));
  dequantize_row((*t)->dtype, (*t)->data, data.get(), n);
  for (int64_t i = 0; i < n; ++i) data[i] += 1.0f;
  TensorView view{name, DType::kF32, {n}, reinterpret_cast<const std::byte*>(data.get()),
                  static_cast<size_t>(n) * sizeof(float)};
  host_weights_.push_back(std::move(data));
  return rk.backend.load_weight(view);
}

void Model::norm(Backend& be, const float* x, const Weight& w, const Weight& b, int rows, float* out) {
  if (config_.norm == NormType::kLayer) {
    be.layer_norm(x, w, b, rows, config_.hidden_size, config_.rms_norm_eps, out);
  } else {
    be.rms_norm(x, w, rows, config_.hidden_size, config_.rms_norm_eps, out);
  }
}

void Model::add_norm(Backend& be, float* x, const float* y, const Weight& w, const Weight& b, int rows, float* out) {
  if (config_.norm == NormType::kLayer) {
    be.add_layer_norm(x, y, w, b, rows, config_.hidden_size, config_.rms_norm_eps, out);
  } else {
    be.add_rms_norm(x, y, w, rows, config_.hidden_size, config_.rms_norm_eps, out);
  }
}

int Model::logit_rows(std::span<const SequenceInput> batch) {
  int n = 0;
  for (const auto& s : batch) n += s.all_logits ? static_cast<int>(s.tokens.size()) : 1;
  return n;
}

StepCapacity Model::capacity_for(std::span<const SequenceInput> batch) {
  StepCapacity c;
  c.max_seqs = static_cast<int>(batch.size());
  for (const auto& s : batch) {
    c.max_tokens += static_cast<int>(s.tokens.size());
    c.max_table_entries += static_cast<int>(s.block_table.size());
  }
  c.max_logit_rows = logit_rows(batch);
  return c;
}

Status Model::reserve(const StepCapacity& want) {
  StepCapacity cap{std::max(want.max_tokens, cap_.max_tokens), std::max(want.max_seqs, cap_.max_seqs),
                   std::max(want.max_table_entries, cap_.max_table_entries),
                   std::max(want.max_logit_rows, cap_.max_logit_rows)};
  cap.max_tokens = std::max(cap.max_tokens, 1);
  cap.max_seqs = std::max(cap.max_seqs, 1);
  cap.max_table_entries = std::max(cap.max_table_entries, 1);
  cap.max_logit_rows = std::max(cap.max_logit_rows, 1);
  if (cap.max_tokens == cap_.max_tokens && cap.max_seqs == cap_.max_seqs &&
      cap.max_table_entries == cap_.max_table_entries && cap.max_logit_rows == cap_.max_logit_rows)
    return {};
  // Offsets fixed by the capacity; the block tables last, so a step uploads
  // everything up to its last table entry in one copy (tens of KiB).
  const size_t T = cap.max_tokens, R = cap.max_logit_rows;
  Staging L;
  size_t at = 0;
  auto place = [&](size_t& off, size_t n) {
    off = at;
    at += (n + 15) / 16 * 16;  // 64-byte aligned arrays
  };
  place(L.ids, T);
  place(L.positions, T);
  place(L.slots, T);
  place(L.token_seq, T);
  place(L.kv_len, cap.max_seqs);
  place(L.first, cap.max_seqs + 1);
  place(L.table_start, cap.max_seqs + 1);
  place(L.tree_mask, 2 * T);  // uint64 per token (64-byte aligned)
  place(L.logit_rows, R);
  place(L.tables, cap.max_table_entries);
  place(L.argmax, R);  // device output only, after the uploaded part
  L.total = at;
  for (auto& rank : ranks_) {
    Status st = reserve_rank(*rank, cap, L);
    if (!st.ok()) return ranks_.size() == 1 ? st : Error{"rank " + std::to_string(rank->shard.rank) + ": " + st.message()};
  }
  host_.assign(L.total, 0);
  layout_ = L;
  cap_ = cap;
  num_tokens_ = num_seqs_ = num_table_ = num_rows_ = 0;
  ran_ = false;
  return {};
}

Status Model::reserve_rank(Rank& rk, const StepCapacity& cap, const Staging& L) {
  release_graphs(rk);  // they point into the workspaces about to be replaced
  const ModelConfig& c = config_;
  const Shard& sh = rk.shard;
  const size_t T = cap.max_tokens, f = sizeof(float), i32 = sizeof(int32_t);
  const size_t QD = static_cast<size_t>(sh.heads) * c.head_dim;
  const size_t KD = static_cast<size_t>(sh.kv_heads) * c.head_dim;
  const size_t H = c.hidden_size, I = static_cast<size_t>(sh.inter), R = cap.max_logit_rows;
  auto alloc = [&](Buffer& b, size_t bytes, const char* what) -> Status {
    b.reset();
    auto nb = rk.backend.alloc(bytes);
    if (!nb) return Error{std::string("model workspace (") + what + "): " + nb.error().message};
    b = std::move(*nb);
    return {};
  };
  GHOSTD_TRY_STATUS(alloc(rk.x, T * H * f, "hidden"));
  GHOSTD_TRY_STATUS(alloc(rk.xn, std::max(T, R) * H * f, "normed"));
  GHOSTD_TRY_STATUS(alloc(rk.q, T * QD * f, "q"));
  GHOSTD_TRY_STATUS(alloc(rk.k, T * KD * f, "k"));
  GHOSTD_TRY_STATUS(alloc(rk.v, T * KD * f, "v"));
  GHOSTD_TRY_STATUS(alloc(rk.attn, T * std::max(QD, H) * f, "attention"));
  GHOSTD_TRY_STATUS(alloc(rk.gate, T * I * f, "gate"));
  GHOSTD_TRY_STATUS(alloc(rk.up, T * I * f, "up"));
  GHOSTD_TRY_STATUS(alloc(rk.logits_in, R * H * f, "logits input"));
  if (rk.comm != nullptr) {
    // Each rank's vocabulary slice, then all of them gathered (rank-major);
    // rank 0 interleaves them into the full rows.
    const size_t slice = R * static_cast<size_t>(sh.vocab_stride);
    GHOSTD_TRY_STATUS(alloc(rk.logits_local, slice * f, "logits slice"));
    rk.backend.fill_zero(rk.logits_local.get(), slice * f);  // the short last slice's tail is gathered too
    GHOSTD_TRY_STATUS(alloc(rk.gathered, slice * sh.ranks * f, "gathered logits"));
  }
  if (sh.rank == 0) GHOSTD_TRY_STATUS(alloc(rk.logits_out, R * static_cast<size_t>(c.vocab_size) * f, "logits"));
  GHOSTD_TRY_STATUS(alloc(rk.staging, L.total * i32, "staging"));
  return rk.backend.reserve_workspace(std::max<int>(cap.max_tokens, cap.max_logit_rows),
                                      static_cast<int>(std::max({H, I, QD})),
                                      AttentionShape{sh.heads, sh.kv_heads, c.head_dim, 1.0f});
}

Status Model::prepare(std::span<const SequenceInput> batch, const KvStorage& kv) {
  const ModelConfig& c = config_;
  const int bs = kv.block_size();
  ran_ = false;
  bucket_ = 0;
  num_tokens_ = num_seqs_ = num_table_ = num_rows_ = 0;
  if (kv.ranks() != ranks())
    return Error{"forward: a KV storage of " + std::to_string(kv.ranks()) + " ranks for a model of " +
                 std::to_string(ranks())};
  const StepCapacity need = capacity_for(batch);
  if (need.max_tokens > cap_.max_tokens || need.max_seqs > cap_.max_seqs ||
      need.max_table_entries > cap_.max_table_entries || need.max_logit_rows > cap_.max_logit_rows)
    return Error{"forward: a step of " + std::to_string(need.max_tokens) + " tokens, " +
                 std::to_string(need.max_seqs) + " sequences, " + std::to_string(need.max_table_entries) +
                 " block-table entries and " + std::to_string(need.max_logit_rows) +
                 " logits rows is beyond the reserved capacity (" + std::to_string(cap_.max_tokens) + ", " +
                 std::to_string(cap_.max_seqs) + ", " + std::to_string(cap_.max_table_entries) + ", " +
                 std::to_string(cap_.max_logit_rows) + ")"};
  // Validate on the host: bad ids or tables fail this step with an error
  // instead of reading out of bounds.
  for (size_t s = 0; s < batch.size(); ++s) {
    const SequenceInput& in = batch[s];
    if (in.tokens.empty()) return Error{"forward: sequence " + std::to_string(s) + " has no new tokens"};
    const int64_t len = static_cast<int64_t>(in.start_pos) + in.tokens.size();
    if (in.start_pos < 0 || len > static_cast<int64_t>(in.block_table.size()) * bs)
      return Error{"forward: sequence " + std::to_string(s) + " has a block table of " +
                   std::to_string(in.block_table.size()) + " blocks for " + std::to_string(len) +
                   " tokens"};
    if (len > c.max_position_embeddings && c.max_position_embeddings > 0)
      return Error{"forward: sequence " + std::to_string(s) + " is " + std::to_string(len) +
                   " tokens long, beyond max_position_embeddings " +
                   std::to_string(c.max_position_embeddings)};
    for (int32_t b : in.block_table)
      if (b < 0 || b >= kv.num_blocks())
        return Error{"forward: block id " + std::to_string(b) + " out of range"};
    for (int32_t t : in.tokens)
      if (t < 0 || t >= c.vocab_size)
        return Error{"forward: token id " + std::to_string(t) + " outside the vocabulary of " +
                     std::to_string(c.vocab_size)};
    if (!in.tree_parents.empty()) {
      const auto& tp = in.tree_parents;
      bool ok = tp.size() == in.tokens.size() && tp.size() <= 64 && tp[0] == -1;
      for (size_t i = 1; ok && i < tp.size(); ++i) ok = tp[i] >= 0 && tp[i] < static_cast<int32_t>(i);
      if (!ok)
        return Error{"forward: sequence " + std::to_string(s) + " has a malformed draft tree (" +
                     std::to_string(tp.size()) + " parents for " + std::to_string(in.tokens.size()) +
                     " tokens; at most 64, the first -1, each an earlier token)"};
    }
  }
  const Staging& L = layout_;
  int32_t* h = host_.data();
  int T = 0, E = 0, R = 0;
  int32_t max_kv_len = 0;
  h[L.first] = 0;
  h[L.table_start] = 0;
  has_tree_ = false;
  for (const SequenceInput& in : batch) has_tree_ = has_tree_ || in.tree_parents.size() > 1;
  uint64_t tree_masks[64];
  int32_t depth[64];
  for (size_t s = 0; s < batch.size(); ++s) {
    const SequenceInput& in = batch[s];
    const bool tree = in.tree_parents.size() > 1;
    for (size_t i = 0; i < in.tokens.size(); ++i) {
      const int32_t slot_index = in.start_pos + static_cast<int32_t>(i);
      int32_t pos = slot_index;
      uint64_t mask = 0;
      if (tree) {
        // The token's ancestors and itself; its position is its depth.
        const int32_t parent = in.tree_parents[i];
        mask = (parent < 0 ? 0 : tree_masks[parent]) | (uint64_t{1} << i);
        depth[i] = parent < 0 ? 0 : depth[parent] + 1;
        tree_masks[i] = mask;
        pos = in.start_pos + depth[i];
      }
      if (in.all_logits || i + 1 == in.tokens.size()) h[L.logit_rows + R++] = T;
      h[L.ids + T] = in.tokens[i];
      h[L.positions + T] = pos;
      h[L.slots + T] = in.block_table[slot_index / bs] * bs + slot_index % bs;
      h[L.token_seq + T] = static_cast<int32_t>(s);
      if (has_tree_) std::memcpy(&h[L.tree_mask + 2 * static_cast<size_t>(T)], &mask, sizeof mask);
      ++T;
    }
    h[L.kv_len + s] = in.start_pos + static_cast<int32_t>(in.tokens.size());
    max_kv_len = std::max(max_kv_len, h[L.kv_len + s]);
    h[L.first + s + 1] = T;
    for (int32_t b : in.block_table) h[L.tables + E++] = b;
    h[L.table_start + s + 1] = E;
  }
  num_rows_ = R;  // rows the caller sees; padding rows come after them
  // A captured step: pure decode, padded to its bucket with scratch rows.
  bucket_ = 0;
  bool decode_only = graphs_ && kv.scratch_block() >= 0 && !batch.empty() && !has_tree_;
  for (const SequenceInput& in : batch) decode_only = decode_only && in.tokens.size() == 1;
  if (decode_only) {
    int bucket = 1;
    while (bucket < static_cast<int>(batch.size())) bucket *= 2;
    const int pads = bucket - static_cast<int>(batch.size());
    if (bucket <= cap_.max_seqs && T + pads <= cap_.max_tokens && R + pads <= cap_.max_logit_rows &&
        E + pads <= cap_.max_table_entries) {
      const int32_t scratch = kv.scratch_block();
      for (int s = static_cast<int>(batch.size()); s < bucket; ++s) {
        h[L.logit_rows + R++] = T;
        h[L.ids + T] = 0;
        h[L.positions + T] = 0;
        h[L.slots + T] = scratch * bs;
        h[L.token_seq + T] = s;
        ++T;
        h[L.kv_len + s] = 1;
        h[L.first + s + 1] = T;
        h[L.tables + E++] = scratch;
        h[L.table_start + s + 1] = E;
      }
      bucket_ = bucket;
    }
  }
  num_tokens_ = T;
  num_seqs_ = bucket_ > 0 ? bucket_ : static_cast<int>(batch.size());
  num_table_ = E;
  run_rows_ = R;
  max_kv_len_ = max_kv_len;
  upload_bytes_ = (L.tables + static_cast<size_t>(E)) * sizeof(int32_t);
  return {};
}

Status Model::run(KvStorage& kv) {
  if (num_tokens_ == 0) return {};
  if (!threads_) {
    GHOSTD_TRY_STATUS(run_rank(*ranks_[0], kv));
  } else {
    // Every rank runs the same prepared step on its own thread; they meet
    // in the step's collectives. A rank's failure fails the group's
    // collectives (timeouts), never leaves the others waiting.
    GHOSTD_TRY_STATUS(threads_->run([&](int r) -> Status {
      Rank& rk = *ranks_[static_cast<size_t>(r)];
      Status st = run_rank(rk, kv);
      if (st.ok() && r != 0) st = rk.backend.synchronize();  // rank 0 syncs in argmax/download
      if (!st.ok()) {
        if (rk.comm) rk.comm->abort("rank " + std::to_string(r) + ": " + st.message());
        return Error{"rank " + std::to_string(r) + ": " + st.message()};
      }
      return {};
    }));
  }
  ran_ = true;
  return {};
}

Status Model::run_rank(Rank& rk, KvStorage& kv) {
  const int T = num_tokens_, S = num_seqs_, R = run_rows_;
  Backend& be = rk.backend;
  be.upload(rk.staging.get(), host_.data(), upload_bytes_);  // the one upload of the step
  if (bucket_ > 0) {
    if (rk.graph_kv != kv.id()) {
      release_graphs(rk);
      rk.graph_kv = kv.id();
    }
    const int key = bucket_;
    auto it = rk.graph_ids.find(key);
    if (it == rk.graph_ids.end() && !rk.graph_failed.count(key) && be.begin_capture()) {
      // Launch sizes must not depend on this step's contexts: max_kv_len 0.
      queue_step(rk, kv, T, S, R, 0);
      auto id = be.end_capture();
      if (id.ok()) {
        it = rk.graph_ids.emplace(key, *id).first;
      } else {
        spdlog::warn("model: decode steps of {} sequences run uncaptured: {}", bucket_, id.error().message);
        rk.graph_failed.insert(key);
      }
    }
    if (it != rk.graph_ids.end()) {
      be.replay(it->second);
      ++rk.replays;
      return {};
    }
  }
  queue_step(rk, kv, T, S, R, max_kv_len_);
  return {};
}

void Model::release_graphs(Rank& rk) {
  for (const auto& [bucket, id] : rk.graph_ids) rk.backend.release_capture(id);
  rk.graph_ids.clear();
  rk.graph_failed.clear();
}

void Model::queue_step(Rank& rk, KvStorage& kv, int T, int S, int R, int max_kv_len) {
  const ModelConfig& c = config_;
  Backend& be = rk.backend;
  const Shard& sh = rk.shard;
  Communicator* comm = rk.comm;
  const Staging& L = layout_;
  const int32_t* dev = rk.staging.as<int32_t>();

  BatchView bv;
  bv.num_tokens = T;
  bv.num_seqs = S;
  bv.block_size = kv.block_size();
  bv.positions = dev + L.positions;
  bv.slots = dev + L.slots;
  bv.token_seq = dev + L.token_seq;
  bv.seq_kv_len = dev + L.kv_len;
  bv.seq_first_token = dev + L.first;
  bv.block_table_start = dev + L.table_start;
  bv.block_tables = dev + L.tables;
  bv.max_kv_len = max_kv_len;
  if (has_tree_) bv.tree_mask = reinterpret_cast<const uint64_t*>(dev + L.tree_mask);

  // This rank's heads; the group size per KV head is the model's.
  AttentionShape shape{sh.heads, sh.kv_heads, c.head_dim, 1.0f / std::sqrt(static_cast<float>(c.head_dim)),
                       c.sliding_window};
  const int H = c.hidden_size;
  const int64_t TH = static_cast<int64_t>(T) * H;
  float* x = rk.x.as<float>();
  float* xn = rk.xn.as<float>();
  float* q = rk.q.as<float>();
  float* k = rk.k.as<float>();
  float* v = rk.v.as<float>();
  float* attn = rk.attn.as<float>();
  float* gate = rk.gate.as<float>();
  float* up = rk.up.as<float>();
  // Per layer: residual adds fused with the norm that follows them (the
  // next layer's input norm included), RoPE fused with the KV append. Under
  // tensor parallelism the O and down projections give partial sums, added
  // over the ranks before the residual add.
  auto opt = [](const Weight& w) { return w ? &w : nullptr; };
  const int64_t TI = static_cast<int64_t>(T) * sh.inter;
  if (comm == nullptr) {
    be.embedding(rk.embed, dev + L.ids, T, x);
  } else {
    be.embedding_slice(rk.embed, dev + L.ids, T, sh.vocab0, x);
    be.all_reduce_sum(*comm, x, TH);
  }
  if (c.embedding_scale > 0) be.scale(x, c.embedding_scale, TH);
  const auto& layers = rk.layers;
  if (!layers.empty()) norm(be, x, layers[0].attn_norm, layers[0].attn_norm_bias, T, xn);
  for (size_t l = 0; l < layers.size(); ++l) {
    const Layer& Ly = layers[l];
    const Projection qkv[] = {{&Ly.q, opt(Ly.q_bias), q}, {&Ly.k, opt(Ly.k_bias), k}, {&Ly.v, opt(Ly.v_bias), v}};
    be.matmul_group(xn, T, qkv);
    KvLayerView layer = kv.layer(sh.rank, static_cast<int>(l));
    be.rope_store_kv(q, k, v, bv, shape, rk.inv_freq.as<float>(), layer);
    be.attention(q, bv, shape, layer, attn);
    be.matmul(attn, T, Ly.o, opt(Ly.o_bias), xn);
    if (comm) be.all_reduce_sum(*comm, xn, TH);
    add_norm(be, x, xn, Ly.mlp_norm, Ly.mlp_norm_bias, T, xn);
    if (c.mlp == MlpType::kGelu) {
      be.matmul(xn, T, Ly.up, opt(Ly.up_bias), gate);
      be.gelu(gate, TI, gate);
    } else {
      be.matmul_glu(xn, T, Ly.gate, Ly.up, c.mlp == MlpType::kGeGlu ? GluAct::kGelu : GluAct::kSilu, gate, up, gate);
    }
    be.matmul(gate, T, Ly.down, opt(Ly.down_bias), xn);
    if (comm) be.all_reduce_sum(*comm, xn, TH);
    if (l + 1 < layers.size()) {
      add_norm(be, x, xn, layers[l + 1].attn_norm, layers[l + 1].attn_norm_bias, T, xn);
    } else {
      be.add(x, xn, TH);
    }
  }
  // Only the rows whose logits are wanted go through the final norm and head.
  be.gather_rows(x, dev + L.logit_rows, R, H, rk.logits_in.as<float>());
  norm(be, rk.logits_in.as<float>(), rk.final_norm, rk.final_norm_bias, R, xn);
  if (comm == nullptr) {
    be.matmul(xn, R, rk.lm_head, nullptr, rk.logits_out.as<float>());
    return;
  }
  // Vocabulary-parallel head: each rank's [R, vocab] slice, gathered, then
  // placed into rank 0's full rows.
  be.matmul(xn, R, rk.lm_head, nullptr, rk.logits_local.as<float>());
  const int64_t unit = static_cast<int64_t>(R) * sh.vocab_stride;
  be.all_gather(*comm, rk.logits_local.as<float>(), unit, rk.gathered.as<float>());
  if (sh.rank != 0) return;
  for (const auto& other : ranks_) {
    const Shard& o = other->shard;
    be.copy_columns(rk.gathered.as<float>() + unit * o.rank, o.vocab, R, o.vocab, rk.logits_out.as<float>() + o.vocab0,
                    c.vocab_size);
  }
}

Status Model::argmax(std::span<int32_t> out) {
  if (!ran_) return Error{"model: argmax before a step ran"};
  if (out.size() < static_cast<size_t>(num_rows_))
    return Error{"model: argmax needs room for " + std::to_string(num_rows_) + " ids"};
  Rank& rk = *ranks_[0];
  int32_t* dev = rk.staging.as<int32_t>() + layout_.argmax;
  rk.backend.argmax_rows(rk.logits_out.as<float>(), num_rows_, config_.vocab_size, dev);
  rk.backend.download(out.data(), dev, static_cast<size_t>(num_rows_) * sizeof(int32_t));
  return rk.backend.synchronize();
}

Status Model::download_logits(int first, int rows, float* out) {
  if (!ran_) return Error{"model: logits before a step ran"};
  if (first < 0 || rows < 0 || first + rows > num_rows_)
    return Error{"model: logits rows [" + std::to_string(first) + ", " + std::to_string(first + rows) +
                 ") outside the step's " + std::to_string(num_rows_)};
  Rank& rk = *ranks_[0];
  const size_t V = static_cast<size_t>(config_.vocab_size);
  rk.backend.download(out, rk.logits_out.as<float>() + static_cast<size_t>(first) * V,
                      static_cast<size_t>(rows) * V * sizeof(float));
  return rk.backend.synchronize();
}

Status Model::forward(std::span<const SequenceInput> batch, KvStorage& kv, std::vector<float>& logits) {
  GHOSTD_TRY_STATUS(prepare(batch, kv));
  GHOSTD_TRY_STATUS(run(kv));
  logits.resize(static_cast<size_t>(num_rows_) * config_.vocab_size);
  if (num_rows_ == 0) return backend().synchronize();
  return download_logits(0, num_rows_, logits.data());
}

}  // namespace ghostd::runtime
