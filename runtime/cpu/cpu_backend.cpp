#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <vector>

#include "runtime/core/argmax.h"
#include "runtime/core/backend.h"
#include "runtime/cpu/gemm.h"
#include "runtime/cpu/host_memory.h"
#include "runtime/cpu/row_ops.h"
#include "runtime/cpu/span_attention.h"
#include "runtime/cpu/thread_pool.h"
#include "runtime/parallel/communicator.h"

namespace ghostd::runtime {

namespace {

using cpu::kLightGrain;
using cpu::layer_norm_row;
using cpu::norm_row;
using cpu::rope_row;
using cpu::row_grain;

// Host-memory backend. Ops run on the calling (engine) thread plus the pool.
// Thread-safety: single owner thread, like every Backend.
class CpuBackend : public Backend {
 public:
  explicit CpuBackend(const CpuBackendOptions& opts)
      : pool_(opts.threads), kernels_(cpu::select_kernels()), weights_(opts.weights) {
    if (const char* env = std::getenv("GHOSTD_CPU_WEIGHTS")) {
      const std::string_view v(env);
      if (v == "mapped") weights_ = CpuWeightMemory::kMapped;
      else if (v == "huge") weights_ = CpuWeightMemory::kHugePages;
      else spdlog::warn("GHOSTD_CPU_WEIGHTS={}: expected mapped or huge; ignored", v);
    }
    spdlog::debug("cpu backend: {} threads, {} kernels, weights {}", pool_.size(), kernels_.isa,
                  weights_ == CpuWeightMemory::kMapped ? "read in place" : "copied into huge pages");
  }

  bool reads_weights_in_place() const override { return weights_ == CpuWeightMemory::kMapped; }

  std::string name() const override {
    return std::string("cpu-") + kernels_.isa + (kernels_.vnni ? "vnni" : "") + (kernels_.int8_kquants ? "-int8k" : "") +
           (kernels_.int8_block32 ? "-int8b32" : "");
  }

  Result<Buffer> alloc(size_t bytes) override {
    size_t rounded = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded);
    if (!p) return Error{"cpu backend: out of memory allocating " + std::to_string(bytes) + " bytes"};
    return Buffer(p, bytes, [](void*, void* ptr) { std::free(ptr); }, nullptr);
  }
  void upload(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void fill_zero(void* dst, size_t bytes) override { std::memset(dst, 0, bytes); }
  Status synchronize() override {
    if (!fatal_.empty()) return Error{fatal_};
    return {};
  }
  std::string fatal_error() const override { return fatal_; }
  size_t free_memory() const override { return 0; }

  Result<Weight> load_weight(const TensorView& t) override {
    if (t.shape.empty() || t.shape.size() > 2)
      return Error{"tensor " + t.name + ": expected 1 or 2 dimensions"};
    Weight w;
    w.dtype = t.dtype;
    w.rows = t.shape.size() == 2 ? t.shape[0] : 1;
    w.cols = t.shape.back();
    w.data = t.data;
    if (w.cols % dtype_block_elems(w.dtype) != 0)
      return Error{"tensor " + t.name + ": " + dtype_name(w.dtype) + " rows must be a multiple of " +
                   std::to_string(dtype_block_elems(w.dtype)) + " elements"};
    const size_t bytes = dtype_bytes(w.dtype, w.rows * w.cols);
    if (t.nbytes < bytes)
      return Error{"tensor " + t.name + ": " + std::to_string(t.nbytes) + " bytes, expected " +
                   std::to_string(bytes)};
    if (weights_ == CpuWeightMemory::kHugePages) {
      void* dst = arena_place(bytes);
      if (dst == nullptr)
        return Error{"cpu backend: out of memory copying tensor " + t.name + " (" + std::to_string(bytes) +
                     " bytes)"};
      cpu::parallel_copy(dst, t.data, bytes, pool_);
      w.data = dst;
    }
    return w;
  }

  // Light ops run in parallel over rows (or elements) once a step is big
  // enough to pay for a region (kLightGrain, row_grain: thread_pool.h); each
  // element is computed the same way whatever the split, so results do not
  // depend on the thread count.

  void embedding(const Weight& table, const int32_t* ids, int n, float* out) override {
    const int64_t dim = table.cols;
    pool_.parallel_for(n, row_grain(dim), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        // Ids are validated against the vocabulary by the model before this op.
        Weight row = table;
        row.rows = 1;
        row.data = row_address(table, ids[i]);
        float* dst = out + i * dim;
        std::fill(dst, dst + dim, 0.0f);
        unit_row(row, dst);
      }
    });
  }

  void embedding_slice(const Weight& table, const int32_t* ids, int n, int64_t first_id, float* out) override {
    const int64_t dim = table.cols;
    pool_.parallel_for(n, row_grain(dim), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        float* dst = out + i * dim;
        std::fill(dst, dst + dim, 0.0f);
        const int64_t r = static_cast<int64_t>(ids[i]) - first_id;
        if (r < 0 || r >= table.rows) continue;
        Weight row = table;
        row.rows = 1;
        row.data = row_address(table, r);
        unit_row(row, dst);
      }
    });
  }

  void copy_columns(const float* src, int64_t src_stride, int rows, int64_t cols, float* dst,
                    int64_t dst_stride) override {
    pool_.parallel_for(rows, row_grain(cols), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) std::memcpy(dst + r * dst_stride, src + r * src_stride, cols * sizeof(float));
    });
  }

  // Collectives run when called (the ranks' threads meet in them).
  void all_reduce_sum(Communicator& comm, float* x, int64_t n) override {
    if (fatal_.empty()) note(comm.all_reduce_sum(x, static_cast<size_t>(n), nullptr));
  }
  void all_gather(Communicator& comm, const float* in, int64_t n, float* out) override {
    if (fatal_.empty()) note(comm.all_gather(in, static_cast<size_t>(n), out, nullptr));
  }

  void rms_norm(const float* x, const Weight& w, int rows, int dim, float eps, float* out) override {
    const float* weight = as_floats(w, norm_weight_);
    pool_.parallel_for(rows, row_grain(dim), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) norm_row(x + r * dim, weight, dim, eps, out + r * dim);
    });
  }

  // Which form of quantized x w's integer path reads: per 256 values (the
  // K-quants, by default), per 32 (the 32-value block types, by default), or
  // none (float).
  struct XForms {
    bool k256 = false, k32 = false;
    explicit operator bool() const { return k256 || k32; }
    XForms& operator|=(XForms o) {
      k256 = k256 || o.k256;
      k32 = k32 || o.k32;
      return *this;
    }
  };
  XForms int8_product(const Weight& w) const {
    if (kernels_.gemm_q8 == nullptr) return {};
    const bool k = w.dtype == DType::kQ4_K || w.dtype == DType::kQ5_K || w.dtype == DType::kQ6_K;
    const bool block32 = w.dtype == DType::kQ8_0 || w.dtype == DType::kQ4_0 || w.dtype == DType::kQ4_1 ||
                         w.dtype == DType::kQ5_0 || w.dtype == DType::kQ5_1;
    return {kernels_.int8_kquants && k && w.cols % 256 == 0,
            kernels_.int8_block32 && block32 && w.cols % 32 == 0};
  }
  // x rounded to 8 bits once for all the threads (and products) that read it,
  // in parallel over its rows.
  void quantize_x(const float* x, int rows, int64_t cols, XForms forms) {
    q8_.resize(rows, static_cast<int>(cols), forms.k256, forms.k32);
    pool_.parallel_for(rows, row_grain(cols), [&](int64_t b, int64_t e) {
      kernels_.quantize_q8(x, static_cast<int>(b), static_cast<int>(e), q8_);
    });
  }
  // Output columns [0, n) of a product with `rows` x rows, across the
  // threads. With few x rows (decode) a product is a stream of weight bytes
  // and a core that streams slower would keep the other waiting at the end:
  // the threads take pieces of about an eighth of their share as they go.
  // With more, one chunk each (the tiles' weights stay in cache across the
  // x rows). Each output's sum does not depend on the split (gemm.h).
  void split_outputs(int rows, int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
    if (rows >= 4 || pool_.size() == 1) return pool_.parallel_for(n, 16, fn);
    pool_.parallel_pieces(n, std::max<int64_t>(16, (n / (8 * pool_.size()) + 15) / 16 * 16), fn);
  }
  void gemm_cols(const float* x, int rows, const Weight& w, bool q8, int64_t b, int64_t e, float* out, int64_t n) {
    if (!q8 || !kernels_.gemm_q8(q8_, w, b, e, out, n)) kernels_.gemm(x, rows, w, b, e, out, n);
  }

  void matmul(const float* x, int rows, const Weight& w, const Weight* bias, float* out) override {
    const int64_t n = w.rows;
    const float* bv = bias && *bias ? as_floats(*bias, bias_) : nullptr;
    const XForms forms = int8_product(w);
    const bool q8 = static_cast<bool>(forms);
    if (q8) quantize_x(x, rows, w.cols, forms);
    // Split output columns across threads; 16-column grain keeps chunks
    // cache-line aligned in the output. The bias is added per chunk, in the
    // same region, after its products.
    split_outputs(rows, n, [&](int64_t b, int64_t e) {
      gemm_cols(x, rows, w, q8, b, e, out, n);
      if (bv)
        for (int r = 0; r < rows; ++r)
          for (int64_t j = b; j < e; ++j) out[r * n + j] += bv[j];
    });
  }

  // The products' output columns laid end to end and split as one range:
  // one region instead of one per weight (a decode step's small K and V
  // products would each pay a wake-up), and the work is balanced across
  // weights. Each output's sum does not depend on the split (gemm.h).
  void matmul_group(const float* x, int rows, std::span<const Projection> outs) override {
    int64_t total = 0;
    XForms forms;
    for (const Projection& p : outs) forms |= int8_product(*p.w);
    const bool q8 = static_cast<bool>(forms);
    if (q8) quantize_x(x, rows, outs[0].w->cols, forms);  // the products share x, so its columns
    if (group_bias_.size() < outs.size()) group_bias_.resize(outs.size());
    if (group_bias_ptr_.size() < outs.size()) group_bias_ptr_.resize(outs.size());
    for (size_t i = 0; i < outs.size(); ++i) {  // biases as floats before the region: no shared scratch inside
      total += outs[i].w->rows;
      const Weight* bias = outs[i].bias;
      group_bias_ptr_[i] = bias && *bias ? as_floats(*bias, group_bias_[i]) : nullptr;
    }
    split_outputs(rows, total, [&](int64_t b, int64_t e) {
      int64_t base = 0;
      for (size_t i = 0; i < outs.size(); ++i) {
        const Projection& p = outs[i];
        const int64_t n = p.w->rows, lo = std::max(b, base) - base, hi = std::min(e, base + n) - base;
        base += n;
        if (lo >= hi) continue;
        gemm_cols(x, rows, *p.w, q8 && int8_product(*p.w), lo, hi, p.out, n);
        if (const float* bv = group_bias_ptr_[i])
          for (int r = 0; r < rows; ++r)
            for (int64_t j = lo; j < hi; ++j) p.out[r * n + j] += bv[j];
      }
    });
  }

  // Each thread's columns of both products, then their activation while
  // they are in cache: one region, where the unfused op took a second one
  // (and ran the activation on one thread below 16,384 values: a decode
  // step's whole MLP width).
  void matmul_glu(const float* x, int rows, const Weight& gate, const Weight& up, GluAct act, float* gate_buf,
                  float* up_buf, float* out) override {
    const int64_t n = gate.rows;
    XForms forms = int8_product(gate);
    forms |= int8_product(up);
    const bool q8 = static_cast<bool>(forms);
    if (q8) quantize_x(x, rows, gate.cols, forms);
    split_outputs(rows, n, [&](int64_t b, int64_t e) {
      gemm_cols(x, rows, gate, q8 && int8_product(gate), b, e, gate_buf, n);
      gemm_cols(x, rows, up, q8 && int8_product(up), b, e, up_buf, n);
      for (int r = 0; r < rows; ++r) {
        const int64_t o = r * n + b;
        kernels_.act(act, gate_buf + o, up_buf + o, e - b, out + o);
      }
    });
  }

  void rope(float* x, int rows, int n_heads, int head_dim, const int32_t* positions,
            const float* inv_freq) override {
    pool_.parallel_for(rows, row_grain(static_cast<int64_t>(n_heads) * head_dim), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) rope_row(x + r * n_heads * head_dim, n_heads, head_dim, positions[r], inv_freq);
    });
  }

  void kv_store(const float* k, const float* v, const BatchView& batch, int kv_dim,
                KvLayerView layer) override {
    pool_.parallel_for(batch.num_tokens, row_grain(2 * kv_dim), [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t slot = batch.slots[t];
        std::memcpy(layer.k + slot * kv_dim, k + t * kv_dim, kv_dim * sizeof(float));
        std::memcpy(layer.v + slot * kv_dim, v + t * kv_dim, kv_dim * sizeof(float));
      }
    });
  }

  // In spans of 256 positions, merged in order (cpu/span_attention.h).
  void attention(const float* q, const BatchView& batch, const AttentionShape& shape, KvLayerView layer,
                 float* out) override {
    attention_.run(pool_, kernels_, q, batch, shape, layer, out);
  }

  void silu_mul(const float* gate, const float* up, int64_t n, float* out) override {
    pool_.parallel_for(n, kLightGrain,
                       [&](int64_t b, int64_t e) { kernels_.act(GluAct::kSilu, gate + b, up + b, e - b, out + b); });
  }

  void gelu_mul(const float* gate, const float* up, int64_t n, float* out) override {
    pool_.parallel_for(n, kLightGrain,
                       [&](int64_t b, int64_t e) { kernels_.act(GluAct::kGelu, gate + b, up + b, e - b, out + b); });
  }

  void gelu(const float* x, int64_t n, float* out) override {
    pool_.parallel_for(n, kLightGrain,
                       [&](int64_t b, int64_t e) { kernels_.act(GluAct::kGelu, x + b, nullptr, e - b, out + b); });
  }

  void scale(float* x, float s, int64_t n) override {
    pool_.parallel_for(n, kLightGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) x[i] *= s;
    });
  }

  void layer_norm(const float* x, const Weight& w, const Weight& b, int rows, int dim, float eps,
                  float* out) override {
    const float* weight = as_floats(w, norm_weight_);
    const float* bias = as_floats(b, norm_bias_);
    pool_.parallel_for(rows, row_grain(dim), [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) layer_norm_row(x + r * dim, weight, bias, dim, eps, out + r * dim);
    });
  }

  void add_layer_norm(float* x, const float* y, const Weight& w, const Weight& b, int rows, int dim, float eps,
                      float* out) override {
    const float* weight = as_floats(w, norm_weight_);
    const float* bias = as_floats(b, norm_bias_);
    pool_.parallel_for(rows, row_grain(dim), [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) {
        float* xr = x + r * dim;
        const float* yr = y + r * dim;
        for (int i = 0; i < dim; ++i) xr[i] += yr[i];
        layer_norm_row(xr, weight, bias, dim, eps, out + r * dim);
      }
    });
  }

  void add(float* x, const float* y, int64_t n) override {
    pool_.parallel_for(n, kLightGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) x[i] += y[i];
    });
  }

  void add_rms_norm(float* x, const float* y, const Weight& w, int rows, int dim, float eps,
                    float* out) override {
    const float* weight = as_floats(w, norm_weight_);
    // Row by row, one region: the add of a row, then its norm (out may be y:
    // the row of y is read before the row of out is written).
    pool_.parallel_for(rows, row_grain(dim), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        float* xr = x + r * dim;
        const float* yr = y + r * dim;
        for (int i = 0; i < dim; ++i) xr[i] += yr[i];
        norm_row(xr, weight, dim, eps, out + r * dim);
      }
    });
  }

  void rope_store_kv(float* q, float* k, const float* v, const BatchView& batch, const AttentionShape& shape,
                     const float* inv_freq, KvLayerView layer) override {
    const int hd = shape.head_dim, kv_dim = shape.n_kv_heads * hd;
    const int64_t q_dim = static_cast<int64_t>(shape.n_heads) * hd;
    pool_.parallel_for(batch.num_tokens, row_grain(q_dim + 2 * kv_dim), [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        rope_row(q + t * q_dim, shape.n_heads, hd, batch.positions[t], inv_freq);
        rope_row(k + t * kv_dim, shape.n_kv_heads, hd, batch.positions[t], inv_freq);
        const int64_t slot = batch.slots[t];
        std::memcpy(layer.k + slot * kv_dim, k + t * kv_dim, kv_dim * sizeof(float));
        std::memcpy(layer.v + slot * kv_dim, v + t * kv_dim, kv_dim * sizeof(float));
      }
    });
  }

  void gather_rows(const float* x, const int32_t* rows, int n, int dim, float* out) override {
    for (int i = 0; i < n; ++i)
      std::memcpy(out + static_cast<int64_t>(i) * dim, x + static_cast<int64_t>(rows[i]) * dim, dim * sizeof(float));
  }

  void argmax_rows(const float* x, int rows, int cols, int32_t* out) override {
    for (int r = 0; r < rows; ++r) out[r] = argmax(std::span<const float>(x + static_cast<int64_t>(r) * cols, cols));
  }

  void copy_kv_blocks(std::span<const KvLayerView> layers, std::span<const KvBlockCopy> copies, int block_size,
                      int kv_dim) override {
    const size_t n = static_cast<size_t>(block_size) * kv_dim;
    // In order (a later copy may overwrite an earlier one's source); the
    // layers of one copy are independent.
    for (const KvBlockCopy& c : copies) {
      pool_.parallel_for(static_cast<int64_t>(layers.size()), 1, [&](int64_t b, int64_t e) {
        for (int64_t l = b; l < e; ++l) {
          const KvLayerView& L = layers[static_cast<size_t>(l)];
          std::memcpy(L.k + c.dst * n, L.k + c.src * n, n * sizeof(float));
          std::memcpy(L.v + c.dst * n, L.v + c.src * n, n * sizeof(float));
        }
      });
    }
  }

 private:
  // A one-row weight as floats: in place when it is float32, else converted
  // into `scratch` (kept, so steady-state steps do not allocate).
  const float* as_floats(const Weight& w, std::vector<float>& scratch) {
    if (w.dtype == DType::kF32) return static_cast<const float*>(w.data);
    if (scratch.size() < static_cast<size_t>(w.cols)) scratch.resize(static_cast<size_t>(w.cols));
    unit_row(w, scratch.data());
    return scratch.data();
  }

  static const void* row_address(const Weight& w, int64_t r) {
    auto* base = static_cast<const std::byte*>(w.data);
    return base + dtype_bytes(w.dtype, w.cols) * r;
  }

  // Converts a one-row weight to float.
  void unit_row(const Weight& w, float* dst) { dequantize_row(w.dtype, w.data, dst, w.cols); }

  // A failed collective leaves the group unusable: the backend is fatal.
  void note(const Status& st) {
    if (!st.ok() && fatal_.empty()) {
      fatal_ = "cpu backend: " + st.message();
      spdlog::error("{}", fatal_);
    }
  }

  // Room for `bytes` of weights in the huge-page arena, 64-byte aligned:
  // tensors are packed into 64 MiB regions (a large one gets its own), so
  // small tensors share huge pages too.
  void* arena_place(size_t bytes) {
    constexpr size_t kRegion = size_t{64} << 20;
    const size_t need = (bytes + 63) / 64 * 64;
    if (arena_.empty() || arena_used_ + need > arena_.back().size()) {
      cpu::HostRegion r(std::max(need, kRegion));
      if (r.data() == nullptr) return nullptr;
      if (!r.huge()) spdlog::debug("cpu backend: huge pages refused for weights; 4 KiB pages used");
      // A big tensor's own region goes first so the open region keeps its room.
      if (need > kRegion && !arena_.empty()) {
        arena_.insert(arena_.end() - 1, std::move(r));
        return arena_[arena_.size() - 2].data();
      }
      arena_.push_back(std::move(r));
      arena_used_ = 0;
    }
    void* p = static_cast<std::byte*>(arena_.back().data()) + arena_used_;
    arena_used_ += need;
    return p;
  }

  cpu::ThreadPool pool_;
  std::string fatal_;
  std::vector<float> norm_weight_, norm_bias_, bias_;  // converted one-row weights (engine thread)
  std::vector<std::vector<float>> group_bias_;         // matmul_group's biases, one per product
  cpu::Q8Rows q8_;                                     // x for the integer K-quant path
  cpu::SpanAttention attention_;
  std::vector<const float*> group_bias_ptr_;
  cpu::Kernels kernels_;
  CpuWeightMemory weights_;
  std::vector<cpu::HostRegion> arena_;  // copied weights (kHugePages)
  size_t arena_used_ = 0;               // bytes placed in arena_.back()
};

}  // namespace

// Step capture on the CPU: the ops between begin_capture and end_capture are
// recorded as calls with their arguments and replayed later, as a CUDA graph
// is. It buys no speed here; it lets the CPU run (and CI test) the engine's
// graph path: fixed pointers, padded buckets, replays.
// Thread-safety: single owner thread, like every Backend.
class CapturingCpuBackend final : public CpuBackend {
 public:
  using CpuBackend::CpuBackend;

  bool begin_capture() override {
    if (recording_) return false;
    recording_ = true;
    current_.clear();
    return true;
  }
  Result<int> end_capture() override {
    if (!recording_) return Error{"cpu backend: end_capture without begin_capture"};
    recording_ = false;
    graphs_.push_back(std::move(current_));
    current_.clear();
    return static_cast<int>(graphs_.size()) - 1;
  }
  void replay(int id) override {
    if (id < 0 || static_cast<size_t>(id) >= graphs_.size()) return;
    for (const auto& op : graphs_[static_cast<size_t>(id)]) op();
  }
  void release_capture(int id) override {
    if (id >= 0 && static_cast<size_t>(id) < graphs_.size()) graphs_[static_cast<size_t>(id)].clear();
  }

  void embedding(const Weight& t, const int32_t* ids, int n, float* out) override {
    run([=, this] { CpuBackend::embedding(t, ids, n, out); });
  }
  void rms_norm(const float* x, const Weight& w, int rows, int dim, float eps, float* out) override {
    run([=, this] { CpuBackend::rms_norm(x, w, rows, dim, eps, out); });
  }
  void matmul(const float* x, int rows, const Weight& w, const Weight* bias, float* out) override {
    const Weight b = bias ? *bias : Weight{};
    run([=, this] { CpuBackend::matmul(x, rows, w, b ? &b : nullptr, out); });
  }
  void matmul_group(const float* x, int rows, std::span<const Projection> outs) override {
    if (!recording_) return CpuBackend::matmul_group(x, rows, outs);
    // A replay outlives the caller's Projections and Weights: keep copies.
    struct Group {
      std::vector<Weight> ws;
      std::vector<Projection> ps;
    };
    auto g = std::make_shared<Group>();
    g->ws.reserve(2 * outs.size());
    for (const Projection& p : outs) {
      g->ws.push_back(*p.w);
      g->ws.push_back(p.bias ? *p.bias : Weight{});
    }
    for (size_t i = 0; i < outs.size(); ++i)
      g->ps.push_back({&g->ws[2 * i], g->ws[2 * i + 1] ? &g->ws[2 * i + 1] : nullptr, outs[i].out});
    run([=, this] { CpuBackend::matmul_group(x, rows, g->ps); });
  }
  void matmul_glu(const float* x, int rows, const Weight& gate, const Weight& up, GluAct act, float* gate_buf,
                  float* up_buf, float* out) override {
    run([=, this] { CpuBackend::matmul_glu(x, rows, gate, up, act, gate_buf, up_buf, out); });
  }
  void rope(float* x, int rows, int n_heads, int head_dim, const int32_t* positions, const float* inv_freq) override {
    run([=, this] { CpuBackend::rope(x, rows, n_heads, head_dim, positions, inv_freq); });
  }
  void kv_store(const float* k, const float* v, const BatchView& batch, int kv_dim, KvLayerView layer) override {
    run([=, this] { CpuBackend::kv_store(k, v, batch, kv_dim, layer); });
  }
  void attention(const float* q, const BatchView& batch, const AttentionShape& shape, KvLayerView layer,
                 float* out) override {
    run([=, this] { CpuBackend::attention(q, batch, shape, layer, out); });
  }
  void add_rms_norm(float* x, const float* y, const Weight& w, int rows, int dim, float eps, float* out) override {
    run([=, this] { CpuBackend::add_rms_norm(x, y, w, rows, dim, eps, out); });
  }
  void rope_store_kv(float* q, float* k, const float* v, const BatchView& batch, const AttentionShape& shape,
                     const float* inv_freq, KvLayerView layer) override {
    run([=, this] { CpuBackend::rope_store_kv(q, k, v, batch, shape, inv_freq, layer); });
  }
  void silu_mul(const float* gate, const float* up, int64_t n, float* out) override {
    run([=, this] { CpuBackend::silu_mul(gate, up, n, out); });
  }
  void add(float* x, const float* y, int64_t n) override {
    run([=, this] { CpuBackend::add(x, y, n); });
  }
  void gelu_mul(const float* gate, const float* up, int64_t n, float* out) override {
    run([=, this] { CpuBackend::gelu_mul(gate, up, n, out); });
  }
  void gelu(const float* x, int64_t n, float* out) override {
    run([=, this] { CpuBackend::gelu(x, n, out); });
  }
  void scale(float* x, float s, int64_t n) override {
    run([=, this] { CpuBackend::scale(x, s, n); });
  }
  void layer_norm(const float* x, const Weight& w, const Weight& b, int rows, int dim, float eps,
                  float* out) override {
    run([=, this] { CpuBackend::layer_norm(x, w, b, rows, dim, eps, out); });
  }
  void add_layer_norm(float* x, const float* y, const Weight& w, const Weight& b, int rows, int dim, float eps,
                      float* out) override {
    run([=, this] { CpuBackend::add_layer_norm(x, y, w, b, rows, dim, eps, out); });
  }
  void gather_rows(const float* x, const int32_t* rows, int n, int dim, float* out) override {
    run([=, this] { CpuBackend::gather_rows(x, rows, n, dim, out); });
  }
  void argmax_rows(const float* x, int rows, int cols, int32_t* out) override {
    run([=, this] { CpuBackend::argmax_rows(x, rows, cols, out); });
  }
  void embedding_slice(const Weight& t, const int32_t* ids, int n, int64_t first_id, float* out) override {
    run([=, this] { CpuBackend::embedding_slice(t, ids, n, first_id, out); });
  }
  void copy_columns(const float* src, int64_t src_stride, int rows, int64_t cols, float* dst,
                    int64_t dst_stride) override {
    run([=, this] { CpuBackend::copy_columns(src, src_stride, rows, cols, dst, dst_stride); });
  }
  void all_reduce_sum(Communicator& comm, float* x, int64_t n) override {
    run([=, this, &comm] { CpuBackend::all_reduce_sum(comm, x, n); });
  }
  void all_gather(Communicator& comm, const float* in, int64_t n, float* out) override {
    run([=, this, &comm] { CpuBackend::all_gather(comm, in, n, out); });
  }

 private:
  template <class F>
  void run(F&& f) {
    if (recording_) {
      current_.emplace_back(std::forward<F>(f));
    } else {
      f();
    }
  }

  bool recording_ = false;
  std::vector<std::function<void()>> current_;
  std::vector<std::vector<std::function<void()>>> graphs_;
};

std::unique_ptr<Backend> make_cpu_backend(const CpuBackendOptions& options) {
  return std::make_unique<CapturingCpuBackend>(options);
}

}  // namespace ghostd::runtime
