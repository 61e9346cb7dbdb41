#include "runtime/model/model.h"

#include <cmath>
#include <string>

namespace ghostd::runtime {

size_t KvStorage::bytes_per_block(const ModelConfig& c, int block_size) {
  // K and V, float32, every layer.
  return static_cast<size_t>(2) * c.num_layers * block_size * c.num_kv_heads * c.head_dim *
         sizeof(float);
}

Result<KvStorage> KvStorage::create(Backend& backend, const ModelConfig& c, int num_blocks,
                                    int block_size) {
  if (num_blocks <= 0 || block_size <= 0)
    return Error{"kv cache: need at least one block of at least one slot"};
  KvStorage kv;
  kv.num_blocks_ = num_blocks;
  kv.block_size_ = block_size;
  kv.kv_dim_ = c.num_kv_heads * c.head_dim;
  const size_t bytes = static_cast<size_t>(num_blocks) * block_size * kv.kv_dim_ * sizeof(float);
  for (int l = 0; l < c.num_layers; ++l) {
    auto k = backend.alloc(bytes);
    if (!k) return Error{"kv cache: " + k.error().message};
    auto v = backend.alloc(bytes);
    if (!v) return Error{"kv cache: " + v.error().message};
    // Zeroed so a slot read before it is written (a bookkeeping bug) is
    // deterministic rather than garbage.
    backend.fill_zero(k->get(), bytes);
    backend.fill_zero(v->get(), bytes);
    kv.k_.push_back(std::move(*k));
    kv.v_.push_back(std::move(*v));
  }
  return kv;
}

namespace {

Result<Weight> bind(const WeightStore& ws, Backend& backend, const std::string& name,
                    std::vector<int64_t> shape) {
  auto t = ws.require(name, std::move(shape));
  if (!t) return t.error();
  return backend.load_weight(**t);
}

}  // namespace

Result<std::unique_ptr<Model>> Model::create(const ModelConfig& c, const WeightStore& ws,
                                             Backend& backend) {
  if (c.num_heads <= 0 || c.num_kv_heads <= 0 || c.num_heads % c.num_kv_heads != 0)
    return Error{"model config: num_attention_heads must be a multiple of num_key_value_heads"};
  if (c.head_dim % 2 != 0) return Error{"model config: head_dim must be even for RoPE"};
  std::unique_ptr<Model> m(new Model(c, backend));
  const int64_t H = c.hidden_size, V = c.vocab_size, I = c.intermediate_size;
  const int64_t QD = static_cast<int64_t>(c.num_heads) * c.head_dim;
  const int64_t KD = static_cast<int64_t>(c.num_kv_heads) * c.head_dim;

#define GHOSTD_BIND(dst, name, ...)                       \
  do {                                                    \
    auto w_ = bind(ws, backend, name, {__VA_ARGS__});     \
    if (!w_) return w_.error();                           \
    dst = *w_;                                            \
  } while (0)

  GHOSTD_BIND(m->embed_, "model.embed_tokens.weight", V, H);
  GHOSTD_BIND(m->final_norm_, "model.norm.weight", H);
  if (c.tie_word_embeddings && !ws.find("lm_head.weight")) {
    m->lm_head_ = m->embed_;
  } else {
    GHOSTD_BIND(m->lm_head_, "lm_head.weight", V, H);
  }
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    Layer L;
    GHOSTD_BIND(L.attn_norm, p + "input_layernorm.weight", H);
    GHOSTD_BIND(L.q, p + "self_attn.q_proj.weight", QD, H);
    GHOSTD_BIND(L.k, p + "self_attn.k_proj.weight", KD, H);
    GHOSTD_BIND(L.v, p + "self_attn.v_proj.weight", KD, H);
    GHOSTD_BIND(L.o, p + "self_attn.o_proj.weight", H, QD);
    if (c.attention_bias) {
      GHOSTD_BIND(L.q_bias, p + "self_attn.q_proj.bias", QD);
      GHOSTD_BIND(L.k_bias, p + "self_attn.k_proj.bias", KD);
      GHOSTD_BIND(L.v_bias, p + "self_attn.v_proj.bias", KD);
    }
    GHOSTD_BIND(L.mlp_norm, p + "post_attention_layernorm.weight", H);
    GHOSTD_BIND(L.gate, p + "mlp.gate_proj.weight", I, H);
    GHOSTD_BIND(L.up, p + "mlp.up_proj.weight", I, H);
    GHOSTD_BIND(L.down, p + "mlp.down_proj.weight", H, I);
    m->layers_.push_back(L);
  }
#undef GHOSTD_BIND

  std::vector<float> inv = rope_inv_freq(c);
  auto buf = backend.alloc(inv.size() * sizeof(float));
  if (!buf) return buf.error();
  backend.upload(buf->get(), inv.data(), inv.size() * sizeof(float));
  m->inv_freq_ = std::move(*buf);
  return m;
}

int Model::logit_rows(std::span<const SequenceInput> batch) {
  int n = 0;
  for (const auto& s : batch) n += s.all_logits ? static_cast<int>(s.tokens.size()) : 1;
  return n;
}

Status Model::ensure_workspace(int num_tokens, int num_seqs, int table_entries, int logit_rows) {
  auto grow = [&](Buffer& b, size_t bytes) -> Status {
    if (b.bytes() >= bytes) return {};
    b.reset();
    auto nb = backend_.alloc(bytes);
    if (!nb) return nb.error();
    b = std::move(*nb);
    return {};
  };
  const ModelConfig& c = config_;
  const size_t T = num_tokens, f = sizeof(float), i32 = sizeof(int32_t);
  if (num_tokens > ws_tokens_) {
    const size_t QD = static_cast<size_t>(c.num_heads) * c.head_dim;
    const size_t KD = static_cast<size_t>(c.num_kv_heads) * c.head_dim;
    const size_t H = c.hidden_size, I = c.intermediate_size;
    GHOSTD_TRY_STATUS(grow(x_, T * H * f));
    GHOSTD_TRY_STATUS(grow(xn_, T * H * f));
    GHOSTD_TRY_STATUS(grow(q_, T * QD * f));
    GHOSTD_TRY_STATUS(grow(k_, T * KD * f));
    GHOSTD_TRY_STATUS(grow(v_, T * KD * f));
    GHOSTD_TRY_STATUS(grow(attn_, T * std::max(QD, H) * f));
    GHOSTD_TRY_STATUS(grow(gate_, T * I * f));
    GHOSTD_TRY_STATUS(grow(up_, T * I * f));
    GHOSTD_TRY_STATUS(grow(ids_, T * i32));
    GHOSTD_TRY_STATUS(grow(positions_, T * i32));
    GHOSTD_TRY_STATUS(grow(slots_, T * i32));
    GHOSTD_TRY_STATUS(grow(token_seq_, T * i32));
    ws_tokens_ = num_tokens;
  }
  if (num_seqs > ws_seqs_) {
    GHOSTD_TRY_STATUS(grow(seq_kv_len_, num_seqs * i32));
    GHOSTD_TRY_STATUS(grow(seq_first_, (num_seqs + 1) * i32));
    GHOSTD_TRY_STATUS(grow(table_start_, (num_seqs + 1) * i32));
    ws_seqs_ = num_seqs;
  }
  if (table_entries > ws_table_) {
    GHOSTD_TRY_STATUS(grow(tables_, table_entries * i32));
    ws_table_ = table_entries;
  }
  if (logit_rows > ws_logits_) {
    GHOSTD_TRY_STATUS(grow(logit_idx_, logit_rows * i32));
    GHOSTD_TRY_STATUS(grow(logits_in_, static_cast<size_t>(logit_rows) * c.hidden_size * f));
    GHOSTD_TRY_STATUS(grow(logits_out_, static_cast<size_t>(logit_rows) * c.vocab_size * f));
    ws_logits_ = logit_rows;
  }
  return {};
}

Status Model::forward(std::span<const SequenceInput> batch, KvStorage& kv,
                      std::vector<float>& logits) {
  const ModelConfig& c = config_;
  const int bs = kv.block_size();
  // Flatten and validate on the host: bad ids or tables fail this job's step
  // with an error instead of reading out of bounds.
  std::vector<int32_t> ids, positions, slots, token_seq, kv_len, first, table_start, tables, lrows;
  first.push_back(0);
  table_start.push_back(0);
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
    for (size_t i = 0; i < in.tokens.size(); ++i) {
      const int32_t t = in.tokens[i];
      if (t < 0 || t >= c.vocab_size)
        return Error{"forward: token id " + std::to_string(t) + " outside the vocabulary of " +
                     std::to_string(c.vocab_size)};
      const int32_t pos = in.start_pos + static_cast<int32_t>(i);
      if (in.all_logits || i + 1 == in.tokens.size()) lrows.push_back(static_cast<int32_t>(ids.size()));
      ids.push_back(t);
      positions.push_back(pos);
      slots.push_back(in.block_table[pos / bs] * bs + pos % bs);
      token_seq.push_back(static_cast<int32_t>(s));
    }
    kv_len.push_back(static_cast<int32_t>(len));
    first.push_back(static_cast<int32_t>(ids.size()));
    tables.insert(tables.end(), in.block_table.begin(), in.block_table.end());
    table_start.push_back(static_cast<int32_t>(tables.size()));
  }
  const int T = static_cast<int>(ids.size()), S = static_cast<int>(batch.size());
  if (T == 0) {
    logits.clear();
    return {};
  }
  const int R = static_cast<int>(lrows.size());
  GHOSTD_TRY_STATUS(ensure_workspace(T, S, std::max<int>(1, tables.size()), R));

  Backend& be = backend_;
  auto up32 = [&](Buffer& dst, const std::vector<int32_t>& src) {
    if (!src.empty()) be.upload(dst.get(), src.data(), src.size() * sizeof(int32_t));
  };
  up32(ids_, ids);
  up32(positions_, positions);
  up32(slots_, slots);
  up32(token_seq_, token_seq);
  up32(seq_kv_len_, kv_len);
  up32(seq_first_, first);
  up32(table_start_, table_start);
  up32(tables_, tables);
  up32(logit_idx_, lrows);

  BatchView bv;
  bv.num_tokens = T;
  bv.num_seqs = S;
  bv.block_size = bs;
  bv.positions = positions_.as<int32_t>();
  bv.slots = slots_.as<int32_t>();
  bv.token_seq = token_seq_.as<int32_t>();
  bv.seq_kv_len = seq_kv_len_.as<int32_t>();
  bv.seq_first_token = seq_first_.as<int32_t>();
  bv.block_table_start = table_start_.as<int32_t>();
  bv.block_tables = tables_.as<int32_t>();

  AttentionShape shape{c.num_heads, c.num_kv_heads, c.head_dim,
                       1.0f / std::sqrt(static_cast<float>(c.head_dim))};
  const int H = c.hidden_size;
  float* x = x_.as<float>();
  float* xn = xn_.as<float>();
  be.embedding(embed_, ids_.as<int32_t>(), T, x);
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Layer& L = layers_[l];
    be.rms_norm(x, L.attn_norm, T, H, c.rms_norm_eps, xn);
    be.matmul(xn, T, L.q, L.q_bias ? &L.q_bias : nullptr, q_.as<float>());
    be.matmul(xn, T, L.k, L.k_bias ? &L.k_bias : nullptr, k_.as<float>());
    be.matmul(xn, T, L.v, L.v_bias ? &L.v_bias : nullptr, v_.as<float>());
    be.rope(q_.as<float>(), T, c.num_heads, c.head_dim, bv.positions, inv_freq_.as<float>());
    be.rope(k_.as<float>(), T, c.num_kv_heads, c.head_dim, bv.positions, inv_freq_.as<float>());
    KvLayerView layer = kv.layer(static_cast<int>(l));
    be.kv_store(k_.as<float>(), v_.as<float>(), bv, kv.kv_dim(), layer);
    be.attention(q_.as<float>(), bv, shape, layer, attn_.as<float>());
    be.matmul(attn_.as<float>(), T, L.o, nullptr, xn);
    be.add(x, xn, static_cast<int64_t>(T) * H);
    be.rms_norm(x, L.mlp_norm, T, H, c.rms_norm_eps, xn);
    be.matmul(xn, T, L.gate, nullptr, gate_.as<float>());
    be.matmul(xn, T, L.up, nullptr, up_.as<float>());
    be.silu_mul(gate_.as<float>(), up_.as<float>(), static_cast<int64_t>(T) * c.intermediate_size,
                gate_.as<float>());
    be.matmul(gate_.as<float>(), T, L.down, nullptr, xn);
    be.add(x, xn, static_cast<int64_t>(T) * H);
  }
  // Only the rows whose logits are wanted go through the final norm and head.
  be.gather_rows(x, logit_idx_.as<int32_t>(), R, H, logits_in_.as<float>());
  be.rms_norm(logits_in_.as<float>(), final_norm_, R, H, c.rms_norm_eps, xn);
  be.matmul(xn, R, lm_head_, nullptr, logits_out_.as<float>());
  logits.resize(static_cast<size_t>(R) * c.vocab_size);
  be.download(logits.data(), logits_out_.as<float>(), logits.size() * sizeof(float));
  return be.synchronize();
}

}  // namespace ghostd::runtime
