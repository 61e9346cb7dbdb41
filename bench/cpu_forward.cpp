// CPU forward throughput: prefill and decode tokens/s at batch 1 and 8, and
// the effective weight bandwidth of a decode step (weight bytes / step time).
//
//   bench_cpu_forward --model PATH [--threads N] [--prompt 128] [--decode 32] [--reps 5]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "runtime/core/log.h"
#include "runtime/model/model_loader.h"

using namespace ghostd::runtime;
using Clock = std::chrono::steady_clock;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

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
  for (int s = 0; s < batch; ++s) in[s] = {toks[s], 0, tables[s], false};
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
      in[s] = {std::span<const int32_t>(&next[s], 1), prompt + d, tables[s], false};
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
  int threads = 0, prompt = 128, decode = 32, reps = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--model") model = argv[i + 1];
    else if (k == "--threads") threads = std::atoi(argv[i + 1]);
    else if (k == "--prompt") prompt = std::atoi(argv[i + 1]);
    else if (k == "--decode") decode = std::atoi(argv[i + 1]);
    else if (k == "--reps") reps = std::atoi(argv[i + 1]);
  }
  if (model.empty()) {
    std::fprintf(stderr, "usage: bench_cpu_forward --model PATH [--threads N] [--prompt 128] [--decode 32] [--reps 5]\n");
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
  std::printf("%-6s %14s %14s %14s %12s\n", "batch", "prefill tok/s", "decode tok/s", "step ms", "weight GB/s");
  double base = 0;
  for (int batch : {1, 8}) {
    std::vector<double> p, d, ms;
    run_once(m, batch, prompt, 4, 99);  // warm-up
    for (int r = 0; r < reps; ++r) {
      Figures f = run_once(m, batch, prompt, decode, r);
      p.push_back(f.prefill_tps);
      d.push_back(f.decode_tps);
      ms.push_back(f.decode_step_ms);
    }
    double step = median(ms);
    std::printf("%-6d %14.1f %14.1f %14.3f %12.2f\n", batch, median(p), median(d), step, weight_bytes / (step * 1e-3) / 1e9);
    if (batch == 1) base = median(d);
    else std::printf("batch %d decode throughput = %.2fx batch 1\n", batch, median(d) / base);
  }
  return 0;
}
