// The backend interface: coarse ops that one forward pass is made of. The CPU
// backend (runtime/cpu) is the reference and a usable backend; a CUDA backend
// implements the same ops with cuBLAS and kernels (DESIGN.md invariant 4).
//
// Activations are float32 buffers in backend memory (host memory on the CPU,
// device memory on a GPU); weights stay in their stored dtype.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/dtype.h"
#include "runtime/core/result.h"
#include "runtime/core/tensor.h"
#include "runtime/core/tree_mask.h"

namespace ghostd::runtime {

class Communicator;  // runtime/parallel/communicator.h

// A weight in backend memory: a matrix [rows, cols] (PyTorch Linear layout,
// out_features x in_features) or a vector (rows == 1), in its stored dtype.
struct Weight {
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* data = nullptr;
  explicit operator bool() const { return data != nullptr; }
};

// One product of a matmul group: out = x @ w^T (+ bias).
// The activation of a gated MLP (Backend::matmul_glu).
enum class GluAct { kSilu, kGelu };

struct Projection {
  const Weight* w = nullptr;
  const Weight* bias = nullptr;  // may be null
  float* out = nullptr;
};

// Owned backend memory. Move-only; frees through its backend.
class Buffer {
 public:
  Buffer() = default;
  Buffer(void* ptr, size_t bytes, void (*release)(void*, void*), void* ctx)
      : ptr_(ptr), bytes_(bytes), release_(release), ctx_(ctx) {}
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      reset();
      ptr_ = o.ptr_;
      bytes_ = o.bytes_;
      release_ = o.release_;
      ctx_ = o.ctx_;
      o.ptr_ = nullptr;
      o.bytes_ = 0;
    }
    return *this;
  }
  ~Buffer() { reset(); }
  void reset() {
    if (ptr_ && release_) release_(ctx_, ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
  }
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  void (*release_)(void*, void*) = nullptr;
  void* ctx_ = nullptr;
};

// The KV cache of one layer: `num_blocks` blocks of `block_size` token slots,
// each slot holding n_kv_heads * head_dim floats for K and for V. Slot s of
// the pool is block s / block_size, offset s % block_size.
struct KvLayerView {
  float* k = nullptr;
  float* v = nullptr;
};

// Where each new token of a batch goes and what it attends to, in backend
// memory. Tokens are flattened sequence after sequence.
struct BatchView {
  int num_tokens = 0;
  int num_seqs = 0;
  int block_size = 0;
  const int32_t* positions = nullptr;        // [num_tokens]
  const int32_t* slots = nullptr;            // [num_tokens] KV slot written
  const int32_t* token_seq = nullptr;        // [num_tokens] sequence index
  const int32_t* seq_kv_len = nullptr;       // [num_seqs] KV length after this step
  const int32_t* seq_first_token = nullptr;  // [num_seqs + 1]
  const int32_t* block_table_start = nullptr;  // [num_seqs + 1] offsets into block_tables
  const int32_t* block_tables = nullptr;
  int max_kv_len = 0;  // host-known: the largest seq_kv_len (0: unknown); sizes launches
  // Tree verification (null when no sequence of the step has a draft tree):
  // per token, the new tokens of its sequence it attends to, bit j for the
  // sequence's j-th new token (its ancestors and itself); 0 for a token that
  // attends causally. See Backend::attention.
  const uint64_t* tree_mask = nullptr;  // [num_tokens]
};


// One copy-on-write block copy: the whole block `src` to `dst`, every layer.
struct KvBlockCopy {
  int32_t src = -1;
  int32_t dst = -1;
};

struct AttentionShape {
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  float scale = 1.0f;
  // Sliding-window attention: a token at position p attends to positions
  // (p - window, p] only (StarCoder2's sliding_window); 0: the whole context.
  int window = 0;
};

// Thread-safety: not thread-safe; one engine thread owns a backend and its
// buffers (DESIGN.md invariant 2).
class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // Memory. `alloc` fails with an Error (not an abort) when memory runs out.
  virtual Result<Buffer> alloc(size_t bytes) = 0;
  virtual void upload(void* dst, const void* src, size_t bytes) = 0;
  virtual void download(void* dst, const void* src, size_t bytes) = 0;
  virtual void fill_zero(void* dst, size_t bytes) = 0;
  // Waits for queued work; returns the first error an op reported since the
  // last call (kernels report failures here, never by aborting).
  virtual Status synchronize() = 0;
  // Empty while the device works; else why it cannot run anything again
  // (a sticky CUDA error: illegal address, a trap, an ECC error). Set by a
  // failed synchronize; the engine then fails its jobs and stops serving.
  virtual std::string fatal_error() const { return {}; }
  // Bytes the backend can still hand out (device memory), or 0 if unknown.
  virtual size_t free_memory() const = 0;

  // Makes a weight usable by the ops: on the CPU the stored bytes are used in
  // place; a GPU backend copies them to the device.
  virtual Result<Weight> load_weight(const TensorView& t) = 0;
  // True when load_weight keeps pointers into the model file's mapping, so
  // the loader reads the file in before binding (MappedFile::settle).
  virtual bool reads_weights_in_place() const { return false; }

  // out[i, :] = table[ids[i], :] as float.
  virtual void embedding(const Weight& table, const int32_t* ids, int n, float* out) = 0;
  // out[r, :] = x[r, :] * rsqrt(mean(x[r, :]^2) + eps) * w.
  virtual void rms_norm(const float* x, const Weight& w, int rows, int dim, float eps,
                        float* out) = 0;
  // out[r, :] = x[r, :] @ w^T (+ bias). x: [rows, w.cols], out: [rows, w.rows].
  virtual void matmul(const float* x, int rows, const Weight& w, const Weight* bias,
                      float* out) = 0;
  // Several products of one input (Q, K and V; gate and up): the same values
  // as one matmul per entry, in entry order, but one pass over the input:
  // one parallel region on the CPU, one cast of x to 16 bits on CUDA.
  virtual void matmul_group(const float* x, int rows, std::span<const Projection> outs) {
    for (const Projection& p : outs) matmul(x, rows, *p.w, p.bias, p.out);
  }
  // The gated MLP's input side in one op: out = act(x gate^T) * (x up^T),
  // [rows, gate.rows], act SiLU (SwiGLU) or tanh GELU (GeGLU). gate_buf and
  // up_buf are [rows, gate.rows] scratch; out may be gate_buf. The same
  // values as matmul_group({gate, up}) then silu_mul or gelu_mul; a backend
  // may fuse them (the CPU: each thread's columns of both products, then
  // their activation while they are in cache, in one parallel region).
  virtual void matmul_glu(const float* x, int rows, const Weight& gate, const Weight& up, GluAct act,
                          float* gate_buf, float* up_buf, float* out) {
    const Projection ps[] = {{&gate, nullptr, gate_buf}, {&up, nullptr, up_buf}};
    matmul_group(x, rows, ps);
    const int64_t n = static_cast<int64_t>(rows) * gate.rows;
    if (act == GluAct::kSilu) silu_mul(gate_buf, up_buf, n, out);
    else gelu_mul(gate_buf, up_buf, n, out);
  }
  // Rotary embedding with rotate_half pairing (i with i + head_dim/2), in place
  // on x: [rows, n_heads * head_dim]; inv_freq: [head_dim / 2].
  virtual void rope(float* x, int rows, int n_heads, int head_dim, const int32_t* positions,
                    const float* inv_freq) = 0;
  // Writes the new tokens' K and V ([num_tokens, n_kv_heads * head_dim]) to
  // their slots.
  virtual void kv_store(const float* k, const float* v, const BatchView& batch, int kv_dim,
                        KvLayerView layer) = 0;
  // Causal attention of each new token over its sequence's KV (positions
  // 0..its own, the last shape.window of them when a window is set).
  // q, out: [num_tokens, n_heads * head_dim].
  // A token t with a tree mask m != 0 (draft-tree verify: its KV index is
  // not its position) attends to the logical positions 0..positions[t],
  // where base = positions[t] + 1 - popcount(m) is the sequence's KV length
  // before the step and position q reads KV index tree_kv_index(m, base, q):
  // the context, then its ancestors, then itself. Positions are visited in
  // the same order and grouping as for a causal token at that position, so
  // an accepted path's values are bitwise those of a chain verify.
  virtual void attention(const float* q, const BatchView& batch, const AttentionShape& shape,
                         KvLayerView layer, float* out) = 0;
  // Fused: x += y, then out = rms_norm(x) * w (the residual add and the next
  // norm in one pass). The same values as add() then rms_norm(). out may be y.
  virtual void add_rms_norm(float* x, const float* y, const Weight& w, int rows, int dim, float eps,
                            float* out) = 0;
  // Fused: RoPE on q ([num_tokens, n_heads * head_dim]) and k ([num_tokens,
  // n_kv_heads * head_dim]) in place, then k and v written to their slots.
  // The same values as rope(q), rope(k), kv_store().
  virtual void rope_store_kv(float* q, float* k, const float* v, const BatchView& batch,
                             const AttentionShape& shape, const float* inv_freq, KvLayerView layer) = 0;
  // out = silu(gate) * up, elementwise.
  virtual void silu_mul(const float* gate, const float* up, int64_t n, float* out) = 0;
  // GELU with the tanh approximation (PyTorch's gelu(approximate="tanh"),
  // HF's gelu_pytorch_tanh): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
  // gelu_mul: out = gelu(gate) * up (GeGLU); gelu: out = gelu(x). out may alias.
  virtual void gelu_mul(const float* gate, const float* up, int64_t n, float* out) = 0;
  virtual void gelu(const float* x, int64_t n, float* out) = 0;
  // x *= s, elementwise (Gemma's embedding scale).
  virtual void scale(float* x, float s, int64_t n) = 0;
  // LayerNorm with bias: out[r, :] = (x[r, :] - mean) * rsqrt(var + eps) * w + b,
  // var the biased variance of the row. out may alias x.
  virtual void layer_norm(const float* x, const Weight& w, const Weight& b, int rows, int dim, float eps,
                          float* out) = 0;
  // Fused: x += y, then out = layer_norm(x); the same values as add() then
  // layer_norm(). out may be y.
  virtual void add_layer_norm(float* x, const float* y, const Weight& w, const Weight& b, int rows, int dim,
                              float eps, float* out) = 0;
  // x += y, elementwise.
  virtual void add(float* x, const float* y, int64_t n) = 0;
  // out[i, :] = x[rows[i], :].
  virtual void gather_rows(const float* x, const int32_t* rows, int n, int dim, float* out) = 0;
  // out[r] = the index of the largest value of row r of x ([rows, cols]);
  // the first one on ties, NaN never chosen (0 for a row of NaN). Matches
  // runtime::argmax on the host, so greedy tokens do not depend on where the
  // argmax ran.
  virtual void argmax_rows(const float* x, int rows, int cols, int32_t* out) = 0;
  // Copies whole KV blocks of every layer (copy-on-write of shared blocks),
  // with the result of doing the copies one after another in order: within
  // one step a block can be the source of one copy and the destination of a
  // later one. `copies` is host memory. With block_size 1 the ids are KV
  // slots: tree verification moves an accepted path's KV into place.
  virtual void copy_kv_blocks(std::span<const KvLayerView> layers, std::span<const KvBlockCopy> copies,
                              int block_size, int kv_dim) = 0;

  // Tensor parallelism (runtime/parallel). A vocabulary slice of the
  // embedding: out[i, :] = table[ids[i] - first_id, :] where that row is in
  // the slice, else zeros, so the ranks' rows sum to the full lookup.
  virtual void embedding_slice(const Weight& table, const int32_t* ids, int n, int64_t first_id,
                               float* out) = 0;
  // dst[r * dst_stride + c] = src[r * src_stride + c] for c < cols: a block
  // of columns (a rank's logits into the full rows).
  virtual void copy_columns(const float* src, int64_t src_stride, int rows, int64_t cols, float* dst,
                            int64_t dst_stride) = 0;
  // Collectives of `comm`, queued in order with the other ops (a captured
  // step holds them). A failed collective (a rank gone, a timeout) is
  // reported by synchronize() and makes the backend fatal: the group cannot
  // run another step.
  virtual void all_reduce_sum(Communicator& comm, float* x, int64_t n) = 0;
  virtual void all_gather(Communicator& comm, const float* in, int64_t n, float* out) = 0;

  // Step capture (CUDA graphs). Ops queued between begin_capture() and
  // end_capture() are recorded instead of run; replay(id) runs them again
  // with the same arguments: the same pointers, whose contents may change in
  // between (upload before replay). Only ops may be called while capturing,
  // never alloc, upload, download or synchronize. begin_capture() is false
  // where capture is not available.
  virtual bool begin_capture() { return false; }
  virtual Result<int> end_capture() { return Error{"step capture is not supported by " + name()}; }
  virtual void replay(int id) { (void)id; }
  // Frees a captured step (its pointers are about to be freed).
  virtual void release_capture(int id) { (void)id; }
  // Whether replaying captured steps pays for padding them to a bucket
  // (launch overhead dominates a decode step): true on a GPU.
  virtual bool capture_pays() const { return false; }

  // Allocates the scratch the ops need for steps of up to `max_tokens` rows,
  // matrices of up to `max_cols` columns and this attention shape, so that
  // no op allocates during a step. Backends without scratch do nothing.
  virtual Status reserve_workspace(int max_tokens, int max_cols, const AttentionShape& shape) {
    (void)max_tokens;
    (void)max_cols;
    (void)shape;
    return {};
  }
};

// Where the CPU backend keeps weights. kMapped reads them in place from the
// mapped model file (no copy): the loader reads the file in and, where the
// kernel can (Linux 6.x page caches in 2 MiB folios: ext4 from 6.16, XFS),
// has it mapped with 2 MiB entries (MappedFile::settle), which decodes as
// fast as kHugePages; elsewhere the page cache's 4 KiB pages. kHugePages
// copies them at load into anonymous memory on 2 MiB pages
// (runtime/cpu/host_memory.h), for kernels whose page cache cannot: twice the
// load time and, during the load, twice the resident memory
// (docs/benchmarks.md). GHOSTD_CPU_WEIGHTS=mapped|huge overrides the option.
enum class CpuWeightMemory { kMapped, kHugePages };

struct CpuBackendOptions {
  int threads = 0;  // 0 = all hardware threads
  CpuWeightMemory weights = CpuWeightMemory::kMapped;
};

std::unique_ptr<Backend> make_cpu_backend(const CpuBackendOptions& options = {});

// A backend by name: "cpu", "cuda" / "cuda:N", or "auto" (the first GPU when
// one is present and the CUDA backend is built, else the CPU). Errors name
// what is missing.
Result<std::unique_ptr<Backend>> make_backend(std::string_view device, int cpu_threads = 0);

}  // namespace ghostd::runtime
