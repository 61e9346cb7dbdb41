#include "runtime/cuda/cuda_backend.h"
#include "runtime/parallel/communicator.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "kernels/argmax.cuh"
#include "kernels/attention.cuh"
#include "kernels/layer_norm.cuh"
#include "kernels/convert.cuh"
#include "kernels/elementwise.cuh"
#include "kernels/gemv.cuh"
#include "kernels/kv_cache.cuh"
#include "kernels/linear_mma.cuh"
#include "kernels/rms_norm.cuh"
#include "kernels/rope.cuh"
#include "runtime/core/copy_waves.h"
#include "runtime/cuda/cuda_handles.h"
#include "runtime/cuda/quant_weights.h"

namespace ghostd::runtime {

namespace {

using cuda::CublasHandle;
using cuda::cuda_error_string;
using cuda::DeviceMemory;
using cuda::Stream;

size_t element_bytes(DType d) {
  return d == DType::kF32 ? 4 : 2;
}

// How linear layers run (GHOSTD_CUDA_LINEAR; docs/configuration.md).
// invariant: F16/BF16 weights on the tensor-core kernel with one reduction
//   order for every row count (kernels/linear_mma), F32 weights through the
//   gemv in chunks; a row's logits do not depend on the rest of the step.
// gemv: every dtype through the float32 gemv in chunks (invariant, slow for
//   long prompts).
// fast: the gemv up to 8 rows, cuBLAS above (not batch invariant).
enum class LinearMode { kInvariant, kGemv, kFast };

LinearMode linear_mode_from_env() {
  const char* env = std::getenv("GHOSTD_CUDA_LINEAR");
  if (!env || !*env) return LinearMode::kInvariant;
  const std::string_view v(env);
  if (v == "invariant") return LinearMode::kInvariant;
  if (v == "gemv") return LinearMode::kGemv;
  if (v == "fast") return LinearMode::kFast;
  spdlog::warn("GHOSTD_CUDA_LINEAR={}: expected invariant, gemv or fast; using invariant", v);
  return LinearMode::kInvariant;
}

const char* linear_mode_name(LinearMode m) {
  return m == LinearMode::kInvariant ? "invariant" : m == LinearMode::kGemv ? "gemv" : "fast";
}

// One GPU, one stream: ops are queued in order on the stream and return at
// once; failures are recorded and reported by the next synchronize(). Memory
// ops (alloc, upload, download, fill_zero, synchronize, load_weight) make the
// device current for the calling thread; kernel ops rely on that, which a
// forward step's leading uploads guarantee.
// Thread-safety: single owner thread, like every Backend.
class CudaBackend final : public Backend {
 public:
  CudaBackend(int device, const cudaDeviceProp& props, Stream stream, CublasHandle blas)
      : device_(device),
        name_("cuda:" + std::to_string(device) + " " + props.name),
        stream_(std::move(stream)),
        blas_(std::move(blas)),
        linear_(linear_mode_from_env()) {
    spdlog::debug("cuda backend: linear layers {}", linear_mode_name(linear_));
  }

  ~CudaBackend() override {
    cudaSetDevice(device_);
    cudaStreamSynchronize(stream_.get());
    for (cudaGraphExec_t g : graphs_)
      if (g) cudaGraphExecDestroy(g);
  }

  // CUDA graphs over the stream. An op that fails while capturing records
  // the failure as usual; end_capture then refuses the graph.
  bool begin_capture() override {
    cudaSetDevice(device_);
    if (capturing_ || !error_.empty()) return false;
    if (cudaStreamBeginCapture(stream_.get(), cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    capturing_ = true;
    return true;
  }

  Result<int> end_capture() override {
    if (!capturing_) return Error{"cuda backend: end_capture without begin_capture"};
    capturing_ = false;
    cudaGraph_t graph = nullptr;
    cudaError_t e = cudaStreamEndCapture(stream_.get(), &graph);
    cudaGraphExec_t exec = nullptr;
    if (e == cudaSuccess && error_.empty()) e = cudaGraphInstantiate(&exec, graph, 0);
    if (graph) cudaGraphDestroy(graph);
    if (e != cudaSuccess || !error_.empty()) {
      cudaGetLastError();
      if (exec) cudaGraphExecDestroy(exec);
      std::string why = !error_.empty() ? std::exchange(error_, std::string()) : cuda_error_string(e);
      return Error{"cuda backend " + name_ + ": step capture failed: " + why};
    }
    graphs_.push_back(exec);
    return static_cast<int>(graphs_.size()) - 1;
  }

  void replay(int id) override {
    if (id < 0 || static_cast<size_t>(id) >= graphs_.size() || !graphs_[static_cast<size_t>(id)]) {
      fail("replay: no captured step " + std::to_string(id));
      return;
    }
    cudaSetDevice(device_);
    check(cudaGraphLaunch(graphs_[static_cast<size_t>(id)], stream_.get()), "replay");
  }

  void release_capture(int id) override {
    if (id < 0 || static_cast<size_t>(id) >= graphs_.size() || !graphs_[static_cast<size_t>(id)]) return;
    cudaSetDevice(device_);
    cudaGraphExecDestroy(graphs_[static_cast<size_t>(id)]);
    graphs_[static_cast<size_t>(id)] = nullptr;
  }

  bool capture_pays() const override { return true; }

  std::string name() const override { return name_; }

  Result<Buffer> alloc(size_t bytes) override {
    cudaSetDevice(device_);
    void* p = nullptr;
    if (cudaError_t e = cudaMalloc(&p, std::max<size_t>(bytes, 1)); e != cudaSuccess) {
      cudaGetLastError();  // an allocation failure is not sticky: clear it
      return Error{"cuda backend: cannot allocate " + std::to_string(bytes) +
                   " bytes: " + cuda_error_string(e)};
    }
    return Buffer(
        p, bytes, [](void*, void* ptr) { cudaFree(ptr); }, nullptr);
  }

  void upload(void* dst, const void* src, size_t bytes) override {
    cudaSetDevice(device_);
    if (bytes) check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_.get()), "upload");
  }

  void download(void* dst, const void* src, size_t bytes) override {
    if (!bytes) return;
    cudaSetDevice(device_);
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_.get()), "download");
    // The caller reads dst next.
    check(cudaStreamSynchronize(stream_.get()), "download");
  }

  void fill_zero(void* dst, size_t bytes) override {
    cudaSetDevice(device_);
    if (bytes) check(cudaMemsetAsync(dst, 0, bytes, stream_.get()), "fill_zero");
  }

  Status synchronize() override {
    cudaSetDevice(device_);
    if (comm_ != nullptr) wait_or_abort();
    check(cudaStreamSynchronize(stream_.get()), "synchronize");
    check(cudaGetLastError(), "synchronize");
    if (error_.empty()) return {};
    return Error{std::exchange(error_, std::string())};
  }

  std::string fatal_error() const override { return fatal_; }

  size_t free_memory() const override {
    cudaSetDevice(device_);
    size_t free = 0, total = 0;
    if (cudaMemGetInfo(&free, &total) != cudaSuccess) return 0;
    return free;
  }

  Result<Weight> load_weight(const TensorView& t) override {
    if (t.shape.empty() || t.shape.size() > 2)
      return Error{"tensor " + t.name + ": expected 1 or 2 dimensions"};
    cudaSetDevice(device_);
    Weight w;
    w.dtype = t.dtype;
    w.rows = t.shape.size() == 2 ? t.shape[0] : 1;
    w.cols = t.shape.back();
    const int64_t n = w.rows * w.cols;
    if (dtype_is_quantized(t.dtype)) {
      // The file's blocks as they are; kernels/quant_matmul decodes them where used.
      DeviceMemory mem;
      GHOSTD_TRY_STATUS(cuda::upload_block_weight(t, w.rows, w.cols, stream_.get(), mem));
      w.data = mem.get();
      weights_.push_back(std::move(mem));
      return w;
    }
    const size_t stored = static_cast<size_t>(n) * element_bytes(t.dtype);
    if (t.nbytes < stored)
      return Error{"tensor " + t.name + ": " + std::to_string(t.nbytes) + " bytes, expected " +
                   std::to_string(stored)};
    DeviceMemory mem;
    if (cudaError_t e = DeviceMemory::allocate(stored, mem); e != cudaSuccess) {
      cudaGetLastError();
      return Error{"tensor " + t.name + ": cannot allocate " + std::to_string(stored) +
                   " bytes on the GPU: " + cuda_error_string(e)};
    }
    cudaError_t e = cudaMemcpyAsync(mem.get(), t.data, stored, cudaMemcpyDefault, stream_.get());
    if (e == cudaSuccess) e = cudaStreamSynchronize(stream_.get());
    if (e != cudaSuccess) {
      cudaGetLastError();
      return Error{"tensor " + t.name + ": copy to the GPU failed: " + cuda_error_string(e)};
    }
    w.data = mem.get();
    weights_.push_back(std::move(mem));
    return w;
  }

  void embedding(const Weight& table, const int32_t* ids, int n, float* out) override {
    if (dtype_is_quantized(table.dtype)) {
      check(cuda::block_embedding(table, ids, n, out, stream_.get()), "embedding (block-quantized)");
      return;
    }
    check(kernels::embedding(table.data, table.dtype, ids, n, static_cast<int>(table.cols), out,
                             stream_.get()),
          "embedding");
  }

  void embedding_slice(const Weight& table, const int32_t* ids, int n, int64_t first_id, float* out) override {
    if (dtype_is_quantized(table.dtype)) {
      check(cuda::block_embedding(table, ids, n, out, stream_.get(), first_id, /*slice=*/true),
            "embedding_slice (block-quantized)");
      return;
    }
    check(kernels::embedding_slice(table.data, table.dtype, table.rows, ids, n, static_cast<int>(table.cols), first_id,
                                   out, stream_.get()),
          "embedding_slice");
  }

  void copy_columns(const float* src, int64_t src_stride, int rows, int64_t cols, float* dst,
                    int64_t dst_stride) override {
    if (rows <= 0 || cols <= 0) return;
    cudaSetDevice(device_);
    check(cudaMemcpy2DAsync(dst, static_cast<size_t>(dst_stride) * sizeof(float), src,
                            static_cast<size_t>(src_stride) * sizeof(float), static_cast<size_t>(cols) * sizeof(float),
                            static_cast<size_t>(rows), cudaMemcpyDeviceToDevice, stream_.get()),
          "copy_columns");
  }

  // NCCL queues the collective on this stream (and is captured with it).
  void all_reduce_sum(Communicator& comm, float* x, int64_t n) override {
    comm_ = &comm;
    cudaSetDevice(device_);
    collective(comm.all_reduce_sum(x, static_cast<size_t>(n), stream_.get()));
  }
  void all_gather(Communicator& comm, const float* in, int64_t n, float* out) override {
    comm_ = &comm;
    cudaSetDevice(device_);
    collective(comm.all_gather(in, static_cast<size_t>(n), out, stream_.get()));
  }

  void rms_norm(const float* x, const Weight& w, int rows, int dim, float eps,
                float* out) override {
    check(kernels::rms_norm(x, w.data, w.dtype, rows, dim, eps, out, stream_.get()), "rms_norm");
  }

  void matmul(const float* x, int rows, const Weight& w, const Weight* bias, float* out) override {
    if (rows <= 0) return;
    const int64_t n = w.rows;
    const int k = static_cast<int>(w.cols);
    const bool has_bias = bias && *bias;
    if (dtype_is_quantized(w.dtype)) {  // any batch: decoded in the kernel, bias in its epilogue
      check(cuda::block_matmul(x, rows, w, has_bias ? bias : nullptr, out, stream_.get()), "matmul (block-quantized)");
      return;
    }
    const void* b = has_bias ? bias->data : nullptr;
    const DType bt = has_bias ? bias->dtype : DType::kF32;
    if (linear_ == LinearMode::kInvariant && (w.dtype == DType::kBF16 || w.dtype == DType::kF16)) {
      // Activations rounded to the weight dtype once, then one kernel for
      // any row count.
      if (!activations16(x, rows, k, w.dtype)) return;
      if (linear16(rows, w, bias, out)) return;
    }
    if (linear_ != LinearMode::kFast) {
      cudaError_t e = kernels::gemv_rows(x, rows, w.data, w.dtype, n, k, b, bt, out, stream_.get());
      if (e != cudaErrorNotSupported) {
        check(e, "matmul (gemv)");
        return;
      }
      if (!warned_variant_) {  // k % 8 != 0 or misaligned: no invariant kernel takes it
        warned_variant_ = true;
        spdlog::warn("cuda backend: a {}x{} matmul falls back to cuBLAS: not batch invariant", n, k);
      }
    } else {
      // Decode-sized batches: the fused gemv (bias in its epilogue); else cuBLAS.
      cudaError_t e = kernels::gemv(x, rows, w.data, w.dtype, n, k, b, bt, out, stream_.get());
      if (e != cudaErrorNotSupported) {
        check(e, "matmul (gemv)");
        return;
      }
    }
    gemm(x, rows, w, out);
    if (has_bias)
      check(kernels::add_bias(out, bias->data, bias->dtype, rows, n, stream_.get()), "matmul bias");
  }

  // In invariant mode the 16-bit products share one cast of x: Q, K and V
  // take one conversion launch instead of three, gate and up one for two.
  // The products themselves are those of matmul().
  void matmul_group(const float* x, int rows, std::span<const Projection> outs) override {
    if (rows <= 0) return;
    bool cast = false;
    DType cast_dtype = DType::kF32;
    for (const Projection& p : outs) {
      const Weight& w = *p.w;
      if (linear_ == LinearMode::kInvariant && (w.dtype == DType::kBF16 || w.dtype == DType::kF16)) {
        if (!cast || cast_dtype != w.dtype) {
          if (!activations16(x, rows, static_cast<int>(w.cols), w.dtype)) return;
          cast = true;
          cast_dtype = w.dtype;
        }
        if (linear16(rows, w, p.bias, p.out)) continue;
      }
      matmul(x, rows, w, p.bias, p.out);
      cast = false;  // a fallback may have rewritten the activations
    }
  }

  void rope(float* x, int rows, int n_heads, int head_dim, const int32_t* positions,
            const float* inv_freq) override {
    check(kernels::rope(x, rows, n_heads, head_dim, positions, inv_freq, stream_.get()), "rope");
  }

  void kv_store(const float* k, const float* v, const BatchView& batch, int kv_dim,
                KvLayerView layer) override {
    check(kernels::kv_store(k, v, batch.slots, batch.num_tokens, kv_dim, layer.k, layer.v,
                            stream_.get()),
          "kv_store");
  }

  void attention(const float* q, const BatchView& batch, const AttentionShape& shape,
                 KvLayerView layer, float* out) override {
    if (shape.head_dim > kernels::kAttentionMaxHeadDim) {
      fail("attention: head_dim " + std::to_string(shape.head_dim) + " is above the supported " +
           std::to_string(kernels::kAttentionMaxHeadDim));
      return;
    }
    kernels::AttentionArgs a;
    a.q = q;
    a.positions = batch.positions;
    a.token_seq = batch.token_seq;
    a.table_start = batch.block_table_start;
    a.tables = batch.block_tables;
    a.k_pool = layer.k;
    a.v_pool = layer.v;
    a.num_tokens = batch.num_tokens;
    a.block_size = batch.block_size;
    a.n_heads = shape.n_heads;
    a.n_kv_heads = shape.n_kv_heads;
    a.head_dim = shape.head_dim;
    a.scale = shape.scale;
    a.window = shape.window;
    a.max_context = batch.max_kv_len;
    a.tree_mask = batch.tree_mask;
    const size_t ws = kernels::attention_workspace_floats(a);
    if (!grow(attn_ws_, ws * sizeof(float), "attention workspace")) return;
    check(kernels::paged_attention(a, out, attn_ws_.as<float>(), stream_.get()),
          "attention");
  }

  void add_rms_norm(float* x, const float* y, const Weight& w, int rows, int dim, float eps,
                    float* out) override {
    check(kernels::add_rms_norm(x, y, w.data, w.dtype, rows, dim, eps, out, stream_.get()), "add_rms_norm");
  }

  void rope_store_kv(float* q, float* k, const float* v, const BatchView& batch, const AttentionShape& shape,
                     const float* inv_freq, KvLayerView layer) override {
    check(kernels::rope_store_kv(q, k, v, batch.num_tokens, shape.n_heads, shape.n_kv_heads, shape.head_dim,
                                 batch.positions, inv_freq, batch.slots, layer.k, layer.v, stream_.get()),
          "rope_store_kv");
  }

  void silu_mul(const float* gate, const float* up, int64_t n, float* out) override {
    check(kernels::silu_mul(gate, up, n, out, stream_.get()), "silu_mul");
  }

  void gelu_mul(const float* gate, const float* up, int64_t n, float* out) override {
    check(kernels::gelu_mul(gate, up, n, out, stream_.get()), "gelu_mul");
  }

  void gelu(const float* x, int64_t n, float* out) override {
    check(kernels::gelu(x, n, out, stream_.get()), "gelu");
  }

  void scale(float* x, float s, int64_t n) override {
    check(kernels::scale(x, s, n, stream_.get()), "scale");
  }

  void layer_norm(const float* x, const Weight& w, const Weight& b, int rows, int dim, float eps,
                  float* out) override {
    check(kernels::layer_norm(x, w.data, w.dtype, b.data, b.dtype, rows, dim, eps, out, stream_.get()),
          "layer_norm");
  }

  void add_layer_norm(float* x, const float* y, const Weight& w, const Weight& b, int rows, int dim, float eps,
                      float* out) override {
    check(kernels::add_layer_norm(x, y, w.data, w.dtype, b.data, b.dtype, rows, dim, eps, out, stream_.get()),
          "add_layer_norm");
  }

  void add(float* x, const float* y, int64_t n) override {
    check(kernels::add(x, y, n, stream_.get()), "add");
  }

  void gather_rows(const float* x, const int32_t* rows, int n, int dim, float* out) override {
    check(kernels::gather_rows(x, rows, n, dim, out, stream_.get()), "gather_rows");
  }

  void argmax_rows(const float* x, int rows, int cols, int32_t* out) override {
    check(kernels::argmax_rows(x, rows, cols, out, stream_.get()), "argmax_rows");
  }

  void copy_kv_blocks(std::span<const KvLayerView> layers, std::span<const KvBlockCopy> copies, int block_size,
                      int kv_dim) override {
    if (copies.empty() || layers.empty()) return;
    cudaSetDevice(device_);
    if (!grow(copy_args_, kCopyArgsBytes, "kv block copies")) return;
    // One launch per wave of independent copies (runtime/core/copy_waves.h),
    // so the result is that of copying in order.
    const size_t ptr_bytes = layers.size() * 2 * sizeof(float*);
    const size_t max_pairs = (kCopyArgsBytes - ptr_bytes) / (2 * sizeof(int32_t));
    if (ptr_bytes >= kCopyArgsBytes || max_pairs == 0) {
      fail("copy_kv_blocks: too many layers for the copy arguments");
      return;
    }
    copy_host_.resize(ptr_bytes);
    for (size_t l = 0; l < layers.size(); ++l) {
      std::memcpy(copy_host_.data() + (2 * l) * sizeof(float*), &layers[l].k, sizeof(float*));
      std::memcpy(copy_host_.data() + (2 * l + 1) * sizeof(float*), &layers[l].v, sizeof(float*));
    }
    const int64_t block_floats = static_cast<int64_t>(block_size) * kv_dim;
    size_t begin = 0;
    for (size_t end : copy_waves_.split(copies, max_pairs)) {
      // Pageable source: cudaMemcpyAsync has staged it when it returns, so
      // the host buffer is reused for the next wave.
      const size_t n = end - begin;
      copy_host_.resize(ptr_bytes + n * 2 * sizeof(int32_t));
      for (size_t i = 0; i < n; ++i) {
        const int32_t pair[2] = {copies[begin + i].src, copies[begin + i].dst};
        std::memcpy(copy_host_.data() + ptr_bytes + i * sizeof(pair), pair, sizeof(pair));
      }
      if (!check(cudaMemcpyAsync(copy_args_.get(), copy_host_.data(), copy_host_.size(), cudaMemcpyHostToDevice,
                                 stream_.get()),
                 "copy_kv_blocks"))
        return;
      auto* base = static_cast<std::byte*>(copy_args_.get());
      if (!check(kernels::copy_kv_blocks(reinterpret_cast<float* const*>(base), static_cast<int>(layers.size()),
                                         reinterpret_cast<const int32_t*>(base + ptr_bytes), static_cast<int>(n),
                                         block_floats, stream_.get()),
                 "copy_kv_blocks"))
        return;
      begin = end;
    }
  }

  Status reserve_workspace(int max_tokens, int max_cols, const AttentionShape& shape) override {
    cudaSetDevice(device_);
    // Activations cast to 16 bits for cuBLAS, and the attention splits'
    // partial results at their largest (see attention_workspace_floats).
    const size_t act = static_cast<size_t>(std::max(max_tokens, 1)) * std::max(max_cols, 1) * 2;
    // Every token at the most splits (attention_workspace_floats).
    const size_t attn = static_cast<size_t>(std::max(max_tokens, 1)) * shape.n_heads * kernels::kAttentionMaxSplits *
                        (shape.head_dim + 2);
    if (!grow(act_, act, "matmul activations") || !grow(attn_ws_, attn * sizeof(float), "attention workspace") ||
        !grow(copy_args_, kCopyArgsBytes, "kv block copies") || !grow(blas_ws_, kBlasWorkspaceBytes, "cuBLAS workspace"))
      return Error{std::exchange(error_, std::string())};
    // cuBLAS must not allocate while a step is captured into a graph.
    if (cublasStatus_t st = cublasSetWorkspace(blas_.get(), blas_ws_.get(), blas_ws_.bytes());
        st != CUBLAS_STATUS_SUCCESS)
      return Error{std::string("cuda backend: cublasSetWorkspace: ") + cublasGetStatusString(st)};
    copy_host_.reserve(kCopyArgsBytes);
    copy_waves_.reserve(kCopyArgsBytes / sizeof(int32_t));
    return {};
  }

 private:
  // Large products: cuBLAS. F32 weights use SGEMM (full float32, TF32 is
  // off by default); F16/BF16 weights take activations cast to their dtype
  // and accumulate in float32 into a float32 output.
  void gemm(const float* x, int rows, const Weight& w, float* out) {
    const int n = static_cast<int>(w.rows), k = static_cast<int>(w.cols);
    const float alpha = 1.0f, beta = 0.0f;
    cublasStatus_t st;
    if (w.dtype == DType::kF32) {
      st = cublasSgemm(blas_.get(), CUBLAS_OP_T, CUBLAS_OP_N, n, rows, k, &alpha,
                       static_cast<const float*>(w.data), k, x, k, &beta, out, n);
    } else if (w.dtype == DType::kBF16 || w.dtype == DType::kF16) {
      if (!activations16(x, rows, k, w.dtype)) return;
      const cudaDataType_t type = w.dtype == DType::kBF16 ? CUDA_R_16BF : CUDA_R_16F;
      st = cublasGemmEx(blas_.get(), CUBLAS_OP_T, CUBLAS_OP_N, n, rows, k, &alpha, w.data, type, k,
                        act_.get(), type, k, &beta, out, CUDA_R_32F, n, CUBLAS_COMPUTE_32F,
                        CUBLAS_GEMM_DEFAULT);
    } else {
      fail("matmul: unsupported weight dtype for cuBLAS (block-quantized weights take block_matmul)");
      return;
    }
    if (st != CUBLAS_STATUS_SUCCESS)
      fail(std::string("matmul: cuBLAS ") + cublasGetStatusName(st) + " (" +
           cublasGetStatusString(st) + ")");
  }

  // The batch-invariant 16-bit product (kernels/linear_mma) of the
  // activations already in act_; false when the kernel does not take the
  // shape and the caller falls back.
  bool linear16(int rows, const Weight& w, const Weight* bias, float* out) {
    const bool has_bias = bias && *bias;
    const cudaError_t e = kernels::linear_mma(act_.get(), rows, w.data, w.dtype, w.rows, static_cast<int>(w.cols),
                                              has_bias ? bias->data : nullptr,
                                              has_bias ? bias->dtype : DType::kF32, out, stream_.get());
    if (e == cudaErrorNotSupported) return false;
    check(e, "matmul (linear_mma)");
    return true;
  }

  // x [rows, k] rounded to `dtype` (F16/BF16) into act_, for the 16-bit
  // products; false (error recorded) on failure.
  bool activations16(const float* x, int rows, int k, DType dtype) {
    const size_t elems = static_cast<size_t>(rows) * k;
    return grow(act_, elems * 2, "matmul activations") &&
           check(kernels::convert_activations(x, static_cast<int64_t>(elems), dtype, act_.get(), stream_.get()),
                 "matmul convert");
  }

  // Makes `mem` hold at least `bytes`; false (error recorded) on failure.
  bool grow(DeviceMemory& mem, size_t bytes, const char* what) {
    if (mem.bytes() >= bytes) return true;
    mem = DeviceMemory();
    if (cudaError_t e = DeviceMemory::allocate(bytes + bytes / 4, mem); e != cudaSuccess) {
      cudaGetLastError();
      fail(std::string(what) + ": cannot allocate " + std::to_string(bytes) +
           " bytes: " + cuda_error_string(e));
      return false;
    }
    return true;
  }

  bool check(cudaError_t e, const char* op) {
    if (e == cudaSuccess) return true;
    fail(std::string(op) + ": " + cuda_error_string(e));
    if (is_sticky(e) && fatal_.empty()) {
      // The context is unusable: every later call returns this error.
      fatal_ = "cuda backend " + name_ + ": " + op + ": " + cuda_error_string(e) +
               " (a sticky error: the device needs a new process)";
      spdlog::error("{}", fatal_);
    }
    return false;
  }

  // A collective blocked on a dead or hung peer never completes: the stream
  // is polled up to the group's timeout, then the group is aborted
  // (ncclCommAbort ends the blocked kernels) and the backend turns fatal.
  void wait_or_abort() {
    const auto deadline = std::chrono::steady_clock::now() + comm_->timeout();
    while (cudaStreamQuery(stream_.get()) == cudaErrorNotReady) {
      if (std::chrono::steady_clock::now() >= deadline) {
        const std::string why = "rank on " + name_ + " waited " + std::to_string(comm_->timeout().count()) +
                                " ms for a step with collectives (a rank failed or stopped)";
        comm_->abort(why);
        collective(Error{why});
        return;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  // A failed collective leaves the group unusable: fatal, like a sticky error.
  void collective(const Status& st) {
    if (st.ok()) return;
    fail(st.message());
    if (fatal_.empty()) {
      fatal_ = "cuda backend " + name_ + ": " + st.message();
      spdlog::error("{}", fatal_);
    }
  }

  static bool is_sticky(cudaError_t e) {
    switch (e) {
      case cudaErrorIllegalAddress:
      case cudaErrorLaunchFailure:
      case cudaErrorHardwareStackError:
      case cudaErrorIllegalInstruction:
      case cudaErrorMisalignedAddress:
      case cudaErrorInvalidAddressSpace:
      case cudaErrorInvalidPc:
      case cudaErrorAssert:
      case cudaErrorECCUncorrectable:
      case cudaErrorLaunchTimeout:
      case cudaErrorDevicesUnavailable:
        return true;
      default:
        return false;
    }
  }

  void fail(const std::string& message) {
    if (error_.empty()) error_ = "cuda backend " + name_ + ": " + message;
    spdlog::debug("cuda backend: {}", message);
  }

  int device_;
  std::string name_;
  Stream stream_;
  CublasHandle blas_;
  std::string error_;  // first failure since the last synchronize()
  std::string fatal_;  // set once a sticky error is seen
  Communicator* comm_ = nullptr;  // the group of this rank's collectives (tensor parallelism)
  std::vector<DeviceMemory> weights_;
  static constexpr size_t kCopyArgsBytes = size_t{64} << 10;
  static constexpr size_t kBlasWorkspaceBytes = size_t{32} << 20;
  DeviceMemory act_, attn_ws_, copy_args_, blas_ws_;  // reused scratch
  bool capturing_ = false;
  std::vector<cudaGraphExec_t> graphs_;
  LinearMode linear_;
  bool warned_variant_ = false;
  std::vector<std::byte> copy_host_;                  // pointers and pairs of one wave
  CopyWaves copy_waves_;
};

}  // namespace

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

Result<CudaDeviceInfo> cuda_device_info(int device) {
  if (device < 0 || device >= cuda_device_count())
    return Error{"cuda: no CUDA device " + std::to_string(device)};
  cudaDeviceProp props{};
  if (cudaError_t e = cudaGetDeviceProperties(&props, device); e != cudaSuccess)
    return Error{"cuda: device properties: " + cuda_error_string(e)};
  CudaDeviceInfo info;
  info.name = props.name;
  info.multiprocessors = props.multiProcessorCount;
  info.total_memory = props.totalGlobalMem;
  int clock_khz = 0, bus_bits = 0;
  if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, device) == cudaSuccess &&
      cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device) == cudaSuccess)
    info.peak_bandwidth_gbs = 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;
  cudaGetLastError();
  return info;
}

Result<std::unique_ptr<Backend>> make_cuda_backend(int device) {
  const int count = cuda_device_count();
  if (device < 0 || device >= count)
    return Error{"cuda backend: no CUDA device " + std::to_string(device) + " (" +
                 std::to_string(count) + " visible)"};
  if (cudaError_t e = cudaSetDevice(device); e != cudaSuccess)
    return Error{"cuda backend: cannot use device " + std::to_string(device) + ": " +
                 cuda_error_string(e)};
  cudaDeviceProp props{};
  if (cudaError_t e = cudaGetDeviceProperties(&props, device); e != cudaSuccess)
    return Error{"cuda backend: device properties: " + cuda_error_string(e)};
  cudaStream_t s = nullptr;
  if (cudaError_t e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking); e != cudaSuccess)
    return Error{"cuda backend: cannot create a stream: " + cuda_error_string(e)};
  Stream stream(s);
  cublasHandle_t h = nullptr;
  if (cublasStatus_t st = cublasCreate(&h); st != CUBLAS_STATUS_SUCCESS)
    return Error{std::string("cuda backend: cublasCreate: ") + cublasGetStatusString(st)};
  CublasHandle blas(h);
  if (cublasStatus_t st = cublasSetStream(h, s); st != CUBLAS_STATUS_SUCCESS)
    return Error{std::string("cuda backend: cublasSetStream: ") + cublasGetStatusString(st)};
  spdlog::info("cuda backend: {} ({} SMs, {:.1f} GiB, compute {}.{})", props.name,
               props.multiProcessorCount, props.totalGlobalMem / double(1 << 30), props.major,
               props.minor);
  return std::unique_ptr<Backend>(
      std::make_unique<CudaBackend>(device, props, std::move(stream), std::move(blas)));
}

}  // namespace ghostd::runtime
