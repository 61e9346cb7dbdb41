// GPU forward throughput on the CUDA backend: prefill and decode tokens/s at
// batch 1 and 8, the effective weight bandwidth of a decode step (weight
// bytes / step time) against the card's peak, and (--check) the last-token
// logits of a short prompt against the CPU backend.
//
//   bench_gpu_forward --model PATH [--device 0] [--prompt 128] [--decode 64] [--reps 5]
//                     [--long 0] [--check 1] [--peak-gbs 0]
//
// A model: tools/make_random_model.py --arch qwen2 --out DIR --hidden 1536
// --layers 28 --heads 12 --kv-heads 2 --intermediate 8960 --vocab 151936
// --dtype bf16 --tied  (a 1.5B Qwen2-shaped checkpoint). Exit code 77 when
// built without CUDA or run without a device.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "runtime/core/log.h"
#include "runtime/model/model_loader.h"
#ifdef GHOSTD_HAVE_CUDA
#include "runtime/cuda/cuda_backend.h"
#endif

using namespace ghostd::runtime;
using Clock = std::chrono::steady_clock;

#ifndef GHOSTD_HAVE_CUDA
int main() {
  std::printf("bench_gpu_forward: built without CUDA (GHOSTD_CUDA=OFF): skipped\n");
  return 77;
}
#else

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "bench_gpu_forward: %s\n", what.c_str());
  std::exit(1);
}

// Forwards every op to the CUDA backend; while `profiling`, waits for each op
// and adds its wall time (launch + kernel) to a per-op total. Errors an inner
// synchronize returns are kept for the model's own synchronize.
// Thread-safety: single owner thread, like every Backend.
class TimingBackend final : public Backend {
 public:
  explicit TimingBackend(std::unique_ptr<Backend> inner) : in_(std::move(inner)) {}
  bool profiling = false;
  struct Total {
    int calls = 0;
    double seconds = 0;
  };
  std::map<std::string, Total> totals;

  std::string name() const override { return in_->name(); }
  Result<Buffer> alloc(size_t bytes) override { return in_->alloc(bytes); }
  void upload(void* d, const void* s, size_t n) override {
    timed("upload", [&] { in_->upload(d, s, n); });
  }
  void download(void* d, const void* s, size_t n) override {
    timed("download", [&] { in_->download(d, s, n); });
  }
  void fill_zero(void* d, size_t n) override { in_->fill_zero(d, n); }
  Status synchronize() override {
    Status st = in_->synchronize();
    if (!st.ok()) return st;
    return std::exchange(held_, Status());
  }
  size_t free_memory() const override { return in_->free_memory(); }
  std::string fatal_error() const override { return in_->fatal_error(); }
  Result<Weight> load_weight(const TensorView& t) override { return in_->load_weight(t); }
  void embedding(const Weight& t, const int32_t* ids, int n, float* out) override {
    timed("embedding", [&] { in_->embedding(t, ids, n, out); });
  }
  void rms_norm(const float* x, const Weight& w, int rows, int dim, float eps, float* out) override {
    timed("rms_norm", [&] { in_->rms_norm(x, w, rows, dim, eps, out); });
  }
  void matmul(const float* x, int rows, const Weight& w, const Weight* b, float* out) override {
    const std::string op = "matmul " + std::to_string(w.rows) + "x" + std::to_string(w.cols);
    timed(op.c_str(), [&] { in_->matmul(x, rows, w, b, out); });
  }
  void matmul_group(const float* x, int rows, std::span<const Projection> outs) override {
    std::string op = "matmul group";
    for (const Projection& p : outs) op += " " + std::to_string(p.w->rows) + "x" + std::to_string(p.w->cols);
    timed(op.c_str(), [&] { in_->matmul_group(x, rows, outs); });
  }
  void rope(float* x, int rows, int nh, int hd, const int32_t* pos, const float* f) override {
    timed("rope", [&] { in_->rope(x, rows, nh, hd, pos, f); });
  }
  void kv_store(const float* k, const float* v, const BatchView& b, int kv_dim,
                KvLayerView l) override {
    timed("kv_store", [&] { in_->kv_store(k, v, b, kv_dim, l); });
  }
  void attention(const float* q, const BatchView& b, const AttentionShape& s, KvLayerView l,
                 float* out) override {
    timed("attention", [&] { in_->attention(q, b, s, l, out); });
  }
  void silu_mul(const float* g, const float* u, int64_t n, float* out) override {
    timed("silu_mul", [&] { in_->silu_mul(g, u, n, out); });
  }
  void add_rms_norm(float* x, const float* y, const Weight& w, int rows, int dim, float eps, float* out) override {
    timed("add_rms_norm", [&] { in_->add_rms_norm(x, y, w, rows, dim, eps, out); });
  }
  void rope_store_kv(float* q, float* k, const float* v, const BatchView& b, const AttentionShape& s,
                     const float* f, KvLayerView l) override {
    timed("rope_store_kv", [&] { in_->rope_store_kv(q, k, v, b, s, f, l); });
  }
  void add(float* x, const float* y, int64_t n) override {
    timed("add", [&] { in_->add(x, y, n); });
  }
  void gelu_mul(const float* g, const float* u, int64_t n, float* out) override {
    timed("gelu_mul", [&] { in_->gelu_mul(g, u, n, out); });
  }
  void gelu(const float* x, int64_t n, float* out) override {
    timed("gelu", [&] { in_->gelu(x, n, out); });
  }
  void scale(float* x, float s, int64_t n) override {
    timed("scale", [&] { in_->scale(x, s, n); });
  }
  void layer_norm(const float* x, const Weight& w, const Weight& b, int rows, int dim, float eps,
                  float* out) override {
    timed("layer_norm", [&] { in_->layer_norm(x, w, b, rows, dim, eps, out); });
  }
  void add_layer_norm(float* x, const float* y, const Weight& w, const Weight& b, int rows, int dim, float eps,
                      float* out) override {
    timed("add_layer_norm", [&] { in_->add_layer_norm(x, y, w, b, rows, dim, eps, out); });
  }
  void gather_rows(const float* x, const int32_t* r, int n, int dim, float* out) override {
    timed("gather_rows", [&] { in_->gather_rows(x, r, n, dim, out); });
  }
  void argmax_rows(const float* x, int rows, int cols, int32_t* out) override {
    timed("argmax_rows", [&] { in_->argmax_rows(x, rows, cols, out); });
  }
  void copy_kv_blocks(std::span<const KvLayerView> l, std::span<const KvBlockCopy> c, int bs, int kv_dim) override {
    timed("copy_kv_blocks", [&] { in_->copy_kv_blocks(l, c, bs, kv_dim); });
  }
  void embedding_slice(const Weight& t, const int32_t* ids, int n, int64_t first, float* out) override {
    timed("embedding_slice", [&] { in_->embedding_slice(t, ids, n, first, out); });
  }
  void copy_columns(const float* s, int64_t ss, int r, int64_t c, float* d, int64_t ds) override {
    timed("copy_columns", [&] { in_->copy_columns(s, ss, r, c, d, ds); });
  }
  void all_reduce_sum(Communicator& comm, float* x, int64_t n) override {
    timed("all_reduce", [&] { in_->all_reduce_sum(comm, x, n); });
  }
  void all_gather(Communicator& comm, const float* in, int64_t n, float* out) override {
    timed("all_gather", [&] { in_->all_gather(comm, in, n, out); });
  }
  Status reserve_workspace(int max_tokens, int max_cols, const AttentionShape& shape) override {
    return in_->reserve_workspace(max_tokens, max_cols, shape);
  }

 private:
  template <class F>
  void timed(const char* op, F&& f) {
    if (!profiling) return f();
    const auto t0 = Clock::now();
    f();
    Status st = in_->synchronize();
    if (!st.ok() && held_.ok()) held_ = st;
    Total& t = totals[op];
    ++t.calls;
    t.seconds += std::chrono::duration<double>(Clock::now() - t0).count();
  }
  std::unique_ptr<Backend> in_;
  Status held_;
};

struct Figures {
  double prefill_tps, decode_tps, decode_step_ms;
};

// `batch` sequences prefill `prompt` tokens each, then decode `decode` steps
// together. Each forward ends with the logits on the host (a sync).
// With `profile`, only the decode steps are profiled.
Figures run_once(Model& m, int batch, int prompt, int decode, uint32_t seed,
                 TimingBackend* profile = nullptr) {
  const ModelConfig& c = m.config();
  const int bs = 16, per_seq = (prompt + decode + bs - 1) / bs;
  auto kv = KvStorage::create(m.backend(), c, per_seq * batch, bs);
  if (!kv) die(kv.error().message);
  std::vector<std::vector<int32_t>> toks(batch), tables(batch);
  for (int s = 0; s < batch; ++s) {
    for (int i = 0; i < prompt; ++i)
      toks[s].push_back(static_cast<int32_t>((seed + s * 131u + i * 7919u) % c.vocab_size));
    for (int b = 0; b < per_seq; ++b) tables[s].push_back(s * per_seq + b);
  }
  std::vector<float> logits;
  std::vector<SequenceInput> in(batch);
  for (int s = 0; s < batch; ++s) in[s] = {toks[s], 0, tables[s], false, {}};
  if (auto st = m.reserve(Model::capacity_for(in)); !st) die(st.message());
  auto t0 = Clock::now();
  if (auto st = m.forward(in, *kv, logits); !st) die(st.message());
  if (profile) profile->profiling = true;
  auto t1 = Clock::now();
  std::vector<int32_t> next(batch);
  for (int d = 0; d < decode; ++d) {
    for (int s = 0; s < batch; ++s) {
      next[s] = static_cast<int32_t>((d * 31 + s) % c.vocab_size);
      in[s] = {std::span<const int32_t>(&next[s], 1), prompt + d, tables[s], false, {}};
    }
    if (auto st = m.forward(in, *kv, logits); !st) die(st.message());
  }
  auto t2 = Clock::now();
  if (profile) profile->profiling = false;
  const double pre = std::chrono::duration<double>(t1 - t0).count();
  const double dec = std::chrono::duration<double>(t2 - t1).count();
  return {batch * prompt / pre, batch * decode / dec, dec / decode * 1e3};
}

// Last-token logits of one prompt.
std::vector<float> prompt_logits(Model& m, const std::vector<int32_t>& prompt) {
  const int bs = 16, blocks = static_cast<int>(prompt.size() + bs - 1) / bs;
  auto kv = KvStorage::create(m.backend(), m.config(), blocks, bs);
  if (!kv) die(kv.error().message);
  std::vector<int32_t> table(blocks);
  for (int b = 0; b < blocks; ++b) table[b] = b;
  SequenceInput in{prompt, 0, table, false, {}};
  if (auto st = m.reserve(Model::capacity_for(std::span<const SequenceInput>(&in, 1))); !st) die(st.message());
  std::vector<float> logits;
  if (auto st = m.forward(std::span<const SequenceInput>(&in, 1), *kv, logits); !st)
    die(st.message());
  return logits;
}

// CUDA against CPU on the same weights: worst logit difference relative to
// the largest logit, and whether the argmax agrees.
bool check_against_cpu(const std::string& path, Model& gpu_model) {
  auto cpu = make_cpu_backend({});
  auto loaded = load_model(path, *cpu, false);
  if (!loaded) die(loaded.error().message);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 24; ++i) prompt.push_back((i * 7919 + 17) % gpu_model.config().vocab_size);
  auto want = prompt_logits(*loaded->model, prompt);
  auto got = prompt_logits(gpu_model, prompt);
  double worst = 0, scale = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    worst = std::max(worst, std::fabs(double(got[i]) - want[i]));
    scale = std::max(scale, std::fabs(double(want[i])));
  }
  const auto arg = [](const std::vector<float>& v) {
    return std::max_element(v.begin(), v.end()) - v.begin();
  };
  const bool same = arg(got) == arg(want);
  const bool ok = same && worst <= 0.02 * scale + 1e-3;
  std::printf(
      "check vs cpu (24-token prompt): max |cuda - cpu| = %.4g, max |logit| = %.4g, argmax %s: "
      "%s\n",
      worst, scale, same ? "same" : "DIFFERS", ok ? "PASS" : "FAIL");
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  setup_logging("warn");
  std::string model;
  int device = 0, prompt = 128, decode = 64, reps = 5, long_prompt = 0, check = 1;
  double peak = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--model")
      model = argv[i + 1];
    else if (k == "--device")
      device = std::atoi(argv[i + 1]);
    else if (k == "--prompt")
      prompt = std::atoi(argv[i + 1]);
    else if (k == "--decode")
      decode = std::atoi(argv[i + 1]);
    else if (k == "--reps")
      reps = std::atoi(argv[i + 1]);
    else if (k == "--long")
      long_prompt = std::atoi(argv[i + 1]);
    else if (k == "--check")
      check = std::atoi(argv[i + 1]);
    else if (k == "--peak-gbs")
      peak = std::atof(argv[i + 1]);
  }
  if (model.empty()) {
    std::fprintf(
        stderr,
        "usage: bench_gpu_forward --model PATH [--device 0] [--prompt 128] [--decode 64] "
        "[--reps 5] [--long 0] [--check 1] [--peak-gbs 0]\n"
        "no model? make a 1.5B Qwen2-shaped one: python3 tools/make_random_model.py --arch qwen2 "
        "--out DIR --hidden 1536 --layers 28 --heads 12 --kv-heads 2 --intermediate 8960 "
        "--vocab 151936 --dtype bf16 --tied\n");
    return 2;
  }
  if (cuda_device_count() == 0) {
    std::printf("bench_gpu_forward: no CUDA device: skipped\n");
    return 77;
  }
  auto info = cuda_device_info(device);
  if (!info) die(info.error().message);
  if (peak <= 0) peak = info->peak_bandwidth_gbs;
  auto cuda = make_cuda_backend(device);
  if (!cuda) die(cuda.error().message);
  TimingBackend backend(std::move(*cuda));
  const auto t_load = Clock::now();
  auto loaded = load_model(model, backend, false);
  if (!loaded) die(loaded.error().message);
  Model& m = *loaded->model;
  size_t weight_bytes = 0;
  for (const auto& name : loaded->weights->names())
    weight_bytes += loaded->weights->find(name)->nbytes;
  std::printf("device %s: %d SMs, %.1f GiB, peak DRAM %.0f GB/s\n", info->name.c_str(),
              info->multiprocessors, info->total_memory / double(1 << 30), peak);
  std::printf(
      "model %s: %.1f MB of weights, loaded in %.2f s, prompt %d, decode %d, median of %d\n",
      model.c_str(), weight_bytes / 1e6,
      std::chrono::duration<double>(Clock::now() - t_load).count(), prompt, decode, reps);
  bool ok = true;
  if (check) ok = check_against_cpu(model, m);

  std::printf("%-6s %8s %14s %14s %10s %12s %8s\n", "batch", "prompt", "prefill tok/s",
              "decode tok/s", "step ms", "weight GB/s", "of peak");
  double base = 0;
  auto row = [&](int batch, int p, int d, int r) {
    std::vector<double> pre, dec, ms;
    run_once(m, batch, p, 4, 99);  // warm-up (also cuBLAS heuristics, allocations)
    for (int i = 0; i < r; ++i) {
      Figures f = run_once(m, batch, p, d, i);
      pre.push_back(f.prefill_tps);
      dec.push_back(f.decode_tps);
      ms.push_back(f.decode_step_ms);
    }
    const double step = median(ms), gbs = weight_bytes / (step * 1e-3) / 1e9;
    std::printf("%-6d %8d %14.1f %14.1f %10.3f %12.1f %7.1f%%\n", batch, p, median(pre),
                median(dec), step, gbs, 100.0 * gbs / peak);
    return median(dec);
  };
  base = row(1, prompt, decode, reps);
  const double b8 = row(8, prompt, decode, reps);
  std::printf("batch 8 decode throughput = %.2fx batch 1\n", b8 / base);
  if (long_prompt > 0) row(1, long_prompt, 16, 1);

  // Where a batch-1 decode step goes: each op waited for, so the sum is
  // above the real (pipelined) step time; launch-bound ops show up as many
  // calls of a few microseconds.
  const int steps = 8;
  run_once(m, 1, prompt, steps, 7, &backend);
  std::vector<std::pair<double, std::string>> ops;
  double sum = 0;
  for (const auto& [op, t] : backend.totals) {
    ops.push_back({t.seconds, op});
    sum += t.seconds;
  }
  std::sort(ops.rbegin(), ops.rend());
  std::printf("decode op profile (batch 1, prompt %d, %d steps, each op synchronized):\n",
              prompt, steps);
  std::printf("  %-22s %8s %12s %8s\n", "op", "calls", "us/call", "share");
  for (const auto& [sec, op] : ops) {
    const auto& t = backend.totals[op];
    std::printf("  %-22s %8d %12.2f %7.1f%%\n", op.c_str(), t.calls, 1e6 * sec / t.calls,
                100.0 * sec / sum);
  }
  return ok ? 0 : 1;
}

#endif  // GHOSTD_HAVE_CUDA
