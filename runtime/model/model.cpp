#include "runtime/model/model.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <string>

#include <spdlog/spdlog.h>

namespace ghostd::runtime {

size_t KvStorage::bytes_per_block(const ModelConfig& c, int block_size) {
  // K and V, float32, every layer.
  return static_cast<size_t>(2) * c.num_layers * block_size * c.num_kv_heads * c.head_dim *
         sizeof(float);
}

Result<KvStorage> KvStorage::create(Backend& backend, const ModelConfig& c, int num_blocks,
                                    int block_size, bool scratch_block) {
  if (num_blocks <= 0 || block_size <= 0)
    return Error{"kv cache: need at least one block of at least one slot"};
  static std::atomic<uint64_t> next_id{1};
  KvStorage kv;
  kv.id_ = next_id++;
  kv.num_blocks_ = num_blocks;
  kv.scratch_block_ = scratch_block ? num_blocks : -1;
  kv.block_size_ = block_size;
  kv.kv_dim_ = c.num_kv_heads * c.head_dim;
  const size_t allocated = static_cast<size_t>(num_blocks) + (scratch_block ? 1 : 0);
  const size_t bytes = allocated * block_size * kv.kv_dim_ * sizeof(float);
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
  if (c.head_dim > 512) return Error{"model config: head_dim " + std::to_string(c.head_dim) + " is above the supported 512"};
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

#define GHOSTD_BIND_NORM(dst, name)       \
  do {                                    \
    auto w_ = m->bind_norm(ws, name);     \
    if (!w_) return w_.error();           \
    dst = *w_;                            \
  } while (0)

  const bool layer_norm = c.norm == NormType::kLayer;
  GHOSTD_BIND(m->embed_, "model.embed_tokens.weight", V, H);
  GHOSTD_BIND_NORM(m->final_norm_, "model.norm.weight");
  if (layer_norm) GHOSTD_BIND(m->final_norm_bias_, "model.norm.bias", H);
  if (c.tie_word_embeddings && !ws.find("lm_head.weight")) {
    m->lm_head_ = m->embed_;
  } else {
    GHOSTD_BIND(m->lm_head_, "lm_head.weight", V, H);
  }
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    Layer L;
    GHOSTD_BIND_NORM(L.attn_norm, p + "input_layernorm.weight");
    if (layer_norm) GHOSTD_BIND(L.attn_norm_bias, p + "input_layernorm.bias", H);
    GHOSTD_BIND(L.q, p + "self_attn.q_proj.weight", QD, H);
    GHOSTD_BIND(L.k, p + "self_attn.k_proj.weight", KD, H);
    GHOSTD_BIND(L.v, p + "self_attn.v_proj.weight", KD, H);
    GHOSTD_BIND(L.o, p + "self_attn.o_proj.weight", H, QD);
    if (c.attention_bias) {
      GHOSTD_BIND(L.q_bias, p + "self_attn.q_proj.bias", QD);
      GHOSTD_BIND(L.k_bias, p + "self_attn.k_proj.bias", KD);
      GHOSTD_BIND(L.v_bias, p + "self_attn.v_proj.bias", KD);
    }
    if (c.dense_bias) GHOSTD_BIND(L.o_bias, p + "self_attn.o_proj.bias", H);
    GHOSTD_BIND_NORM(L.mlp_norm, p + "post_attention_layernorm.weight");
    if (layer_norm) GHOSTD_BIND(L.mlp_norm_bias, p + "post_attention_layernorm.bias", H);
    if (c.mlp == MlpType::kGelu) {
      GHOSTD_BIND(L.up, p + "mlp.c_fc.weight", I, H);
      GHOSTD_BIND(L.down, p + "mlp.c_proj.weight", H, I);
      if (c.dense_bias) {
        GHOSTD_BIND(L.up_bias, p + "mlp.c_fc.bias", I);
        GHOSTD_BIND(L.down_bias, p + "mlp.c_proj.bias", H);
      }
    } else {
      GHOSTD_BIND(L.gate, p + "mlp.gate_proj.weight", I, H);
      GHOSTD_BIND(L.up, p + "mlp.up_proj.weight", I, H);
      GHOSTD_BIND(L.down, p + "mlp.down_proj.weight", H, I);
    }
    m->layers_.push_back(L);
  }
#undef GHOSTD_BIND
#undef GHOSTD_BIND_NORM

  std::vector<float> inv = rope_inv_freq(c);
  auto buf = backend.alloc(inv.size() * sizeof(float));
  if (!buf) return buf.error();
  backend.upload(buf->get(), inv.data(), inv.size() * sizeof(float));
  m->inv_freq_ = std::move(*buf);
  return m;
}

Result<Weight> Model::bind_norm(const WeightStore& ws, const std::string& name) {
  auto t = ws.require(name, {config_.hidden_size});
  if (!t) return t.error();
  if (!config_.norm_weight_offset) return backend_.load_weight(**t);
  // Gemma: x * (1 + w). Adding 1 once here, in float32 as transformers does
  // before multiplying, gives the same products as adding it in the op.
  const int64_t n = config_.hidden_size;
  auto data = std::make_unique<float[]>(static_cast<size_t>(n));
  dequantize_row((*t)->dtype, (*t)->data, data.get(), n);
  for (int64_t i = 0; i < n; ++i) data[i] += 1.0f;
  TensorView view{name, DType::kF32, {n}, reinterpret_cast<const std::byte*>(data.get()),
                  static_cast<size_t>(n) * sizeof(float)};
  host_weights_.push_back(std::move(data));
  return backend_.load_weight(view);
}

void Model::norm(const float* x, const Weight& w, const Weight& b, int rows, float* out) {
  if (config_.norm == NormType::kLayer) {
    backend_.layer_norm(x, w, b, rows, config_.hidden_size, config_.rms_norm_eps, out);
  } else {
    backend_.rms_norm(x, w, rows, config_.hidden_size, config_.rms_norm_eps, out);
  }
}

void Model::add_norm(float* x, const float* y, const Weight& w, const Weight& b, int rows, float* out) {
  if (config_.norm == NormType::kLayer) {
    backend_.add_layer_norm(x, y, w, b, rows, config_.hidden_size, config_.rms_norm_eps, out);
  } else {
    backend_.add_rms_norm(x, y, w, rows, config_.hidden_size, config_.rms_norm_eps, out);
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
  release_graphs();  // they point into the workspaces about to be replaced
  const ModelConfig& c = config_;
  const size_t T = cap.max_tokens, f = sizeof(float), i32 = sizeof(int32_t);
  const size_t QD = static_cast<size_t>(c.num_heads) * c.head_dim;
  const size_t KD = static_cast<size_t>(c.num_kv_heads) * c.head_dim;
  const size_t H = c.hidden_size, I = c.intermediate_size, R = cap.max_logit_rows;
  auto alloc = [&](Buffer& b, size_t bytes, const char* what) -> Status {
    b.reset();
    auto nb = backend_.alloc(bytes);
    if (!nb) return Error{std::string("model workspace (") + what + "): " + nb.error().message};
    b = std::move(*nb);
    return {};
  };
  GHOSTD_TRY_STATUS(alloc(x_, T * H * f, "hidden"));
  GHOSTD_TRY_STATUS(alloc(xn_, std::max(T, R) * H * f, "normed"));
  GHOSTD_TRY_STATUS(alloc(q_, T * QD * f, "q"));
  GHOSTD_TRY_STATUS(alloc(k_, T * KD * f, "k"));
  GHOSTD_TRY_STATUS(alloc(v_, T * KD * f, "v"));
  GHOSTD_TRY_STATUS(alloc(attn_, T * std::max(QD, H) * f, "attention"));
  GHOSTD_TRY_STATUS(alloc(gate_, T * I * f, "gate"));
  GHOSTD_TRY_STATUS(alloc(up_, T * I * f, "up"));
  GHOSTD_TRY_STATUS(alloc(logits_in_, R * H * f, "logits input"));
  GHOSTD_TRY_STATUS(alloc(logits_out_, R * static_cast<size_t>(c.vocab_size) * f, "logits"));

  // Offsets fixed by the capacity; the block tables last, so a step uploads
  // everything up to its last table entry in one copy (tens of KiB).
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
  place(L.logit_rows, R);
  place(L.tables, cap.max_table_entries);
  place(L.argmax, R);  // device output only, after the uploaded part
  L.total = at;
  GHOSTD_TRY_STATUS(alloc(staging_, L.total * i32, "staging"));
  host_.assign(L.total, 0);
  GHOSTD_TRY_STATUS(backend_.reserve_workspace(
      std::max<int>(cap.max_tokens, cap.max_logit_rows), static_cast<int>(std::max({H, I, QD})),
      AttentionShape{c.num_heads, c.num_kv_heads, c.head_dim, 1.0f}));
  layout_ = L;
  cap_ = cap;
  num_tokens_ = num_seqs_ = num_table_ = num_rows_ = 0;
  ran_ = false;
  return {};
}

Status Model::prepare(std::span<const SequenceInput> batch, const KvStorage& kv) {
  const ModelConfig& c = config_;
  const int bs = kv.block_size();
  ran_ = false;
  bucket_ = 0;
  num_tokens_ = num_seqs_ = num_table_ = num_rows_ = 0;
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
  }
  const Staging& L = layout_;
  int32_t* h = host_.data();
  int T = 0, E = 0, R = 0;
  int32_t max_kv_len = 0;
  h[L.first] = 0;
  h[L.table_start] = 0;
  for (size_t s = 0; s < batch.size(); ++s) {
    const SequenceInput& in = batch[s];
    for (size_t i = 0; i < in.tokens.size(); ++i) {
      const int32_t pos = in.start_pos + static_cast<int32_t>(i);
      if (in.all_logits || i + 1 == in.tokens.size()) h[L.logit_rows + R++] = T;
      h[L.ids + T] = in.tokens[i];
      h[L.positions + T] = pos;
      h[L.slots + T] = in.block_table[pos / bs] * bs + pos % bs;
      h[L.token_seq + T] = static_cast<int32_t>(s);
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
  bool decode_only = graphs_ && kv.scratch_block() >= 0 && !batch.empty();
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
  const int T = num_tokens_, S = num_seqs_, R = run_rows_;
  if (T == 0) return {};
  Backend& be = backend_;
  be.upload(staging_.get(), host_.data(), upload_bytes_);  // the one upload of the step
  if (bucket_ > 0) {
    if (graph_kv_ != kv.id()) {
      release_graphs();
      graph_kv_ = kv.id();
    }
    const int key = bucket_;
    auto it = graph_ids_.find(key);
    if (it == graph_ids_.end() && !graph_failed_.count(key) && be.begin_capture()) {
      // Launch sizes must not depend on this step's contexts: max_kv_len 0.
      queue_step(kv, T, S, R, 0);
      auto id = be.end_capture();
      if (id.ok()) {
        it = graph_ids_.emplace(key, *id).first;
      } else {
        spdlog::warn("model: decode steps of {} sequences run uncaptured: {}", bucket_, id.error().message);
        graph_failed_.insert(key);
      }
    }
    if (it != graph_ids_.end()) {
      be.replay(it->second);
      ++replays_;
      ran_ = true;
      return {};
    }
  }
  queue_step(kv, T, S, R, max_kv_len_);
  ran_ = true;
  return {};
}

void Model::release_graphs() {
  for (const auto& [bucket, id] : graph_ids_) backend_.release_capture(id);
  graph_ids_.clear();
  graph_failed_.clear();
}

void Model::queue_step(KvStorage& kv, int T, int S, int R, int max_kv_len) {
  const ModelConfig& c = config_;
  Backend& be = backend_;
  const Staging& L = layout_;
  const int32_t* dev = staging_.as<int32_t>();

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

  AttentionShape shape{c.num_heads, c.num_kv_heads, c.head_dim,
                       1.0f / std::sqrt(static_cast<float>(c.head_dim)), c.sliding_window};
  const int H = c.hidden_size;
  float* x = x_.as<float>();
  float* xn = xn_.as<float>();
  // Per layer: residual adds fused with the norm that follows them (the
  // next layer's input norm included), RoPE fused with the KV append.
  auto opt = [](const Weight& w) { return w ? &w : nullptr; };
  const int64_t TI = static_cast<int64_t>(T) * c.intermediate_size;
  be.embedding(embed_, dev + L.ids, T, x);
  if (c.embedding_scale > 0) be.scale(x, c.embedding_scale, static_cast<int64_t>(T) * H);
  if (!layers_.empty()) norm(x, layers_[0].attn_norm, layers_[0].attn_norm_bias, T, xn);
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Layer& Ly = layers_[l];
    be.matmul(xn, T, Ly.q, opt(Ly.q_bias), q_.as<float>());
    be.matmul(xn, T, Ly.k, opt(Ly.k_bias), k_.as<float>());
    be.matmul(xn, T, Ly.v, opt(Ly.v_bias), v_.as<float>());
    KvLayerView layer = kv.layer(static_cast<int>(l));
    be.rope_store_kv(q_.as<float>(), k_.as<float>(), v_.as<float>(), bv, shape, inv_freq_.as<float>(), layer);
    be.attention(q_.as<float>(), bv, shape, layer, attn_.as<float>());
    be.matmul(attn_.as<float>(), T, Ly.o, opt(Ly.o_bias), xn);
    add_norm(x, xn, Ly.mlp_norm, Ly.mlp_norm_bias, T, xn);
    if (c.mlp == MlpType::kGelu) {
      be.matmul(xn, T, Ly.up, opt(Ly.up_bias), gate_.as<float>());
      be.gelu(gate_.as<float>(), TI, gate_.as<float>());
    } else {
      be.matmul(xn, T, Ly.gate, nullptr, gate_.as<float>());
      be.matmul(xn, T, Ly.up, nullptr, up_.as<float>());
      if (c.mlp == MlpType::kGeGlu) {
        be.gelu_mul(gate_.as<float>(), up_.as<float>(), TI, gate_.as<float>());
      } else {
        be.silu_mul(gate_.as<float>(), up_.as<float>(), TI, gate_.as<float>());
      }
    }
    be.matmul(gate_.as<float>(), T, Ly.down, opt(Ly.down_bias), xn);
    if (l + 1 < layers_.size()) {
      add_norm(x, xn, layers_[l + 1].attn_norm, layers_[l + 1].attn_norm_bias, T, xn);
    } else {
      be.add(x, xn, static_cast<int64_t>(T) * H);
    }
  }
  // Only the rows whose logits are wanted go through the final norm and head.
  be.gather_rows(x, dev + L.logit_rows, R, H, logits_in_.as<float>());
  norm(logits_in_.as<float>(), final_norm_, final_norm_bias_, R, xn);
  be.matmul(xn, R, lm_head_, nullptr, logits_out_.as<float>());
}

Status Model::argmax(std::span<int32_t> out) {
  if (!ran_) return Error{"model: argmax before a step ran"};
  if (out.size() < static_cast<size_t>(num_rows_))
    return Error{"model: argmax needs room for " + std::to_string(num_rows_) + " ids"};
  int32_t* dev = staging_.as<int32_t>() + layout_.argmax;
  backend_.argmax_rows(logits_out_.as<float>(), num_rows_, config_.vocab_size, dev);
  backend_.download(out.data(), dev, static_cast<size_t>(num_rows_) * sizeof(int32_t));
  return backend_.synchronize();
}

Status Model::download_logits(int first, int rows, float* out) {
  if (!ran_) return Error{"model: logits before a step ran"};
  if (first < 0 || rows < 0 || first + rows > num_rows_)
    return Error{"model: logits rows [" + std::to_string(first) + ", " + std::to_string(first + rows) +
                 ") outside the step's " + std::to_string(num_rows_)};
  const size_t V = static_cast<size_t>(config_.vocab_size);
  backend_.download(out, logits_out_.as<float>() + static_cast<size_t>(first) * V, static_cast<size_t>(rows) * V * sizeof(float));
  return backend_.synchronize();
}

Status Model::forward(std::span<const SequenceInput> batch, KvStorage& kv, std::vector<float>& logits) {
  GHOSTD_TRY_STATUS(prepare(batch, kv));
  GHOSTD_TRY_STATUS(run(kv));
  logits.resize(static_cast<size_t>(num_rows_) * config_.vocab_size);
  if (num_rows_ == 0) return backend_.synchronize();
  return download_logits(0, num_rows_, logits.data());
}

}  // namespace ghostd::runtime
