// CPU forward throughput: prefill and decode tokens/s at batch 1 and 8, the
// effective weight bandwidth of a decode step (weight bytes / step time) and
// the prefill's GFLOP/s, each beside the machine's own limit measured in the
// same run (bench/cpu_probes.h): streaming read bandwidth and FMA peak.
//
//   bench_cpu_forward --model PATH [--threads N] [--prompt 128] [--decode 32] [--reps 5]
//                     [--probe-mb 1024 | --no-probe]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_util.h"
#include "bench/cpu_probes.h"
#include "runtime/core/log.h"
#include "runtime/cpu/gemm.h"
#include "runtime/model/model_loader.h"

using namespace ghostd::runtime;
using Clock = std::chrono::steady_clock;
using ghostd::bench::median;

namespace {

struct Figures {
  double prefill_tps, decode_tps, decode_step_ms;
};

// One run: `batch` sequences prefill `prompt` tokens each, then decode
// `decode` steps together.
Figures run_once(Model& m, int batch, int prompt, int decode, uint32_t seed) {
  const ModelConfig& c = m.config();
  const int bs = 16, per_seq = (prompt + decode + bs - 1) / bs;
  auto kv = KvStorage::create(m.backend(), c, per_seq * batch, bs);
  if (!kv) {
    std::fprintf(stderr, "%s\n", kv.error().message.c_str());
    std::exit(1);
  }
  std::vector<std::vector<int32_t>> toks(batch), tables(batch);
  for (int s = 0; s < batch; ++s) {
    for (int i = 0; i < prompt; ++i) toks[s].push_back(static_cast<int32_t>((seed + s * 131 + i * 7919) % c.vocab_size));
    for (int b = 0; b < per_seq; ++b) tables[s].push_back(s * per_seq + b);
  }
  std::vector<float> logits;
  std::vector<SequenceInput> in(batch);
  for (int s = 0; s < batch; ++s) in[s] = {toks[s], 0, tables[s], false, {}};
  if (auto st = m.reserve(Model::capacity_for(in)); !st) {
    std::fprintf(stderr, "%s\n", st.message().c_str());
    std::exit(1);
  }
  auto t0 = Clock::now();
  if (auto st = m.forward(in, *kv, logits); !st) {
    std::fprintf(stderr, "%s\n", st.message().c_str());
    std::exit(1);
  }
  auto t1 = Clock::now();
  std::vector<int32_t> next(batch);
  for (int d = 0; d < decode; ++d) {
    for (int s = 0; s < batch; ++s) {
      next[s] = static_cast<int32_t>((d * 31 + s) % c.vocab_size);
      in[s] = {std::span<const int32_t>(&next[s], 1), prompt + d, tables[s], false, {}};
    }
    if (auto st = m.forward(in, *kv, logits); !st) {
      std::fprintf(stderr, "%s\n", st.message().c_str());
      std::exit(1);
    }
  }
  auto t2 = Clock::now();
  double pre = std::chrono::duration<double>(t1 - t0).count();
  double dec = std::chrono::duration<double>(t2 - t1).count();
  return {batch * prompt / pre, batch * decode / dec, dec / decode * 1e3};
}

}  // namespace

int main(int argc, char** argv) {
  setup_logging("warn");
  std::string model;
  int threads = 0, prompt = 128, decode = 32, reps = 5, probe_mb = 1024;
  std::vector<int> batches = {1, 8};
  for (int i = 1; i < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--no-probe") {
      probe_mb = 0;
      --i;
      continue;
    }
    if (i + 1 >= argc) break;
    if (k == "--model") model = argv[i + 1];
    else if (k == "--threads") threads = std::atoi(argv[i + 1]);
    else if (k == "--prompt") prompt = std::atoi(argv[i + 1]);
    else if (k == "--decode") decode = std::atoi(argv[i + 1]);
    else if (k == "--reps") reps = std::atoi(argv[i + 1]);
    else if (k == "--probe-mb") probe_mb = std::atoi(argv[i + 1]);
    else if (k == "--batches") {
      batches.clear();
      for (int b : ghostd::bench::parse_int_list(argv[i + 1])) batches.push_back(std::max(1, b));
    }
  }
  if (model.empty()) {
    std::fprintf(stderr,
                 "usage: bench_cpu_forward --model PATH [--threads N] [--prompt 128] [--decode 32] [--reps 5] "
                 "[--probe-mb 1024 | --no-probe] [--batches 1,8]\n");
    return 2;
  }
  auto backend = make_cpu_backend({.threads = threads});
  auto loaded = load_model(model, *backend, false);
  if (!loaded) {
    std::fprintf(stderr, "%s\n", loaded.error().message.c_str());
    return 1;
  }
  Model& m = *loaded->model;
  // Bytes one decode step streams: every weight once (tied heads counted once).
  size_t weight_bytes = 0;
  for (const auto& name : loaded->weights->names()) weight_bytes += loaded->weights->find(name)->nbytes;
  std::printf("model %s: %.1f MB of weights, backend %s, prompt %d, decode %d, median of %d\n", model.c_str(),
              weight_bytes / 1e6, backend->name().c_str(), prompt, decode, reps);
  for (const auto& [file, r] : loaded->page_cache) {
    if (r.measured)
      std::printf("weights read in place: %.0f of %.0f MiB on 2 MiB pages%s (%.0f before), read in %.2f s\n",
                  r.huge / 1048576.0, r.bytes / 1048576.0, r.refreshed ? " after re-reading the page cache" : "",
                  r.huge_before / 1048576.0, r.seconds);
  }
  const int nthreads = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  double bandwidth = 0, peak = 0;
  if (probe_mb > 0) {
    const char* isa = ghostd::runtime::cpu::select_kernels().isa;
    bandwidth = ghostd::bench::probe_read_bandwidth(nthreads, static_cast<size_t>(probe_mb) << 20);
    const double one = ghostd::bench::probe_fma_peak(isa, 1);
    const double all = ghostd::bench::probe_fma_peak(isa, nthreads);
    peak = one * nthreads;
    std::printf("probe: read bandwidth %.2f GB/s (%d threads over %d MiB); FMA peak (%s, float32) %.1f GFLOP/s one "
                "core, x %d threads = %.1f (%.1f measured at once)\n",
                bandwidth, nthreads, probe_mb, isa, one, nthreads, peak, all);
  }
  // Multiply-adds of a prefill: every matmul weight once per token (the head
  // once per sequence: only the last row's logits), plus attention over the
  // causal context (QK and AV: 4 x heads x head_dim per token pair).
  const ModelConfig& c = m.config();
  const double H = c.hidden_size, QD = double(c.num_heads) * c.head_dim, KD = double(c.num_kv_heads) * c.head_dim;
  const double layer = H * QD * 2 + H * KD * 2 + H * c.intermediate_size * (c.mlp == MlpType::kGelu ? 2 : 3);
  auto prefill_flops = [&](int batch) {
    return batch * (2.0 * c.num_layers * layer * prompt + 2.0 * c.vocab_size * H +
                    4.0 * QD * c.num_layers * prompt * (prompt + 1) / 2.0);
  };
  std::printf("%-6s %14s %14s %14s %12s %14s\n", "batch", "prefill tok/s", "decode tok/s", "step ms", "weight GB/s",
              "prefill GFLOP/s");
  double base = 0;
  for (int batch : batches) {
    std::vector<double> p, d, ms;
    run_once(m, batch, prompt, 4, 99);  // warm-up
    for (int r = 0; r < reps; ++r) {
      Figures f = run_once(m, batch, prompt, decode, r);
      p.push_back(f.prefill_tps);
      d.push_back(f.decode_tps);
      ms.push_back(f.decode_step_ms);
    }
    double step = median(ms);
    const double gbs = weight_bytes / (step * 1e-3) / 1e9;
    const double gflops = prefill_flops(batch) / (batch * prompt / median(p)) / 1e9;
    std::printf("%-6d %14.1f %14.1f %14.3f %12.2f %14.1f\n", batch, median(p), median(d), step, gbs, gflops);
    if (bandwidth > 0)
      std::printf("batch %d: decode reads weights at %.0f%% of the probed bandwidth; prefill at %.0f%% of the FMA peak\n",
                  batch, 100 * gbs / bandwidth, 100 * gflops / peak);
    if (base == 0) base = median(d);
    else std::printf("batch %d decode throughput = %.2fx batch %d\n", batch, median(d) / base, batches[0]);
  }
  return 0;
}
