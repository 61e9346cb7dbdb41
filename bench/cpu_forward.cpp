// CPU forward throughput: prefill and decode tokens/s at batch 1 and 8, the
// effective weight bandwidth of a decode step (weight bytes / step time) and
// the prefill's GFLOP/s, each beside the machine's own limit measured in the
// same run (bench/cpu_probes.h): streaming read bandwidth and FMA peak. The
// bandwidth is probed again just before each repetition's decode steps, and decode's share
// of that probe is given rep by rep, with the share of CPU time the host
// took (steal) during the reps: on a shared virtual machine the limit moves
// from one second to the next, and a ratio to a probe taken earlier says
// as much about the neighbours as about the code.
//
//   bench_cpu_forward --model PATH [--threads N] [--prompt 128] [--decode 32] [--reps 5]
//                     [--probe-mb 1024 | --no-probe] [--batches 1,8]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
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
  double beside_gbs = 0;  // the read probe just before the decode steps (0: not probed)
  ghostd::bench::HostCpuTimes h0, h1, h2;  // the machine's CPU times at the start, between the phases, at the end
};

// One run: `batch` sequences prefill `prompt` tokens each, then decode
// `decode` steps together; the bandwidth is probed between the two when
// `probe` is given, with `threads` threads.
Figures run_once(Model& m, int batch, int prompt, int decode, uint32_t seed,
                 ghostd::bench::ReadProbe* probe = nullptr, int threads = 1) {
  Figures fig{};
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
  fig.h0 = ghostd::bench::host_cpu_times();
  auto t0 = Clock::now();
  if (auto st = m.forward(in, *kv, logits); !st) {
    std::fprintf(stderr, "%s\n", st.message().c_str());
    std::exit(1);
  }
  const double pre = std::chrono::duration<double>(Clock::now() - t0).count();
  if (probe != nullptr) fig.beside_gbs = probe->measure(threads, 1);
  fig.h1 = ghostd::bench::host_cpu_times();
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
  fig.h2 = ghostd::bench::host_cpu_times();
  double dec = std::chrono::duration<double>(t2 - t1).count();
  fig.prefill_tps = batch * prompt / pre;
  fig.decode_tps = batch * decode / dec;
  fig.decode_step_ms = dec / decode * 1e3;
  return fig;
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
  std::unique_ptr<ghostd::bench::ReadProbe> probe;  // kept: probed again beside each rep
  if (probe_mb > 0) {
    const char* isa = ghostd::runtime::cpu::select_kernels().isa;
    probe = std::make_unique<ghostd::bench::ReadProbe>(static_cast<size_t>(probe_mb) << 20);
    bandwidth = probe->measure(nthreads);
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
    std::vector<double> p, d, ms, beside, share;
    ghostd::bench::HostCpuTimes pre_steal, dec_steal;  // summed over the reps, per phase
    bool steal_ok = true;
    run_once(m, batch, prompt, 4, 99);  // warm-up
    for (int r = 0; r < reps; ++r) {
      Figures f = run_once(m, batch, prompt, decode, r, probe.get(), nthreads);
      steal_ok = steal_ok && f.h0.ok && f.h1.ok && f.h2.ok;
      pre_steal.steal += f.h1.steal - f.h0.steal;
      pre_steal.total += f.h1.total - f.h0.total;
      dec_steal.steal += f.h2.steal - f.h1.steal;
      dec_steal.total += f.h2.total - f.h1.total;
      p.push_back(f.prefill_tps);
      d.push_back(f.decode_tps);
      ms.push_back(f.decode_step_ms);
      if (f.beside_gbs > 0) {
        beside.push_back(f.beside_gbs);
        share.push_back(100 * weight_bytes / (f.decode_step_ms * 1e-3) / 1e9 / f.beside_gbs);
      }
    }
    double step = median(ms);
    const double gbs = weight_bytes / (step * 1e-3) / 1e9;
    const double gflops = prefill_flops(batch) / (batch * prompt / median(p)) / 1e9;
    std::printf("%-6d %14.1f %14.1f %14.3f %12.2f %14.1f\n", batch, median(p), median(d), step, gbs, gflops);
    if (bandwidth > 0)
      std::printf("batch %d: decode reads weights at %.0f%% of the probed bandwidth; prefill at %.0f%% of the FMA peak\n",
                  batch, 100 * gbs / bandwidth, 100 * gflops / peak);
    if (!share.empty())
      std::printf("batch %d: probed just before each rep's decode steps: %.1f-%.1f GB/s; decode read weights at "
                  "%.0f%% of it (median; %.0f-%.0f%% over %zu reps)\n",
                  batch, *std::min_element(beside.begin(), beside.end()),
                  *std::max_element(beside.begin(), beside.end()), median(share),
                  *std::min_element(share.begin(), share.end()), *std::max_element(share.begin(), share.end()),
                  share.size());
    auto pct = [](const ghostd::bench::HostCpuTimes& t) {
      return t.total > 0 ? 100.0 * static_cast<double>(t.steal) / static_cast<double>(t.total) : 0.0;
    };
    if (steal_ok)
      std::printf("batch %d: the host took %.1f%% of this machine's CPU time during prefill, %.1f%% during decode "
                  "(steal)\n",
                  batch, pct(pre_steal), pct(dec_steal));
    if (base == 0) base = median(d);
    else std::printf("batch %d decode throughput = %.2fx batch %d\n", batch, median(d) / base, batches[0]);
  }
  return 0;
}
