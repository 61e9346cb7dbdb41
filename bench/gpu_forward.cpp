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
#include <string>
#include <vector>

#include "runtime/log.h"
#include "runtime/model_loader.h"
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

struct Figures {
  double prefill_tps, decode_tps, decode_step_ms;
};

// `batch` sequences prefill `prompt` tokens each, then decode `decode` steps
// together. Each forward ends with the logits on the host (a sync).
Figures run_once(Model& m, int batch, int prompt, int decode, uint32_t seed) {
  const ModelConfig& c = m.config();
  const int bs = 16, per_seq = (prompt + decode + bs - 1) / bs;
  auto kv = KvStorage::create(m.backend(), c, per_seq * batch, bs);
  if (!kv) die(kv.error().message);
  std::vector<std::vector<int32_t> > toks(batch), tables(batch);
  for (int s = 0; s < batch; ++s) {
    for (int i = 0; i < prompt; ++i)
      toks[s].push_back(static_cast<int32_t>((seed + s * 131u + i * 7919u) % c.vocab_size));
    for (int b = 0; b < per_seq; ++b) tables[s].push_back(s * per_seq + b);
  }
  std::vector<float> logits;
  std::vector<SequenceInput> in(batch);
  for (int s = 0; s < batch; ++s) in[s] = {toks[s], 0, tables[s], false};
  auto t0 = Clock::now();
  if (auto st = m.forward(in, *kv, logits); !st) die(st.message());
  auto t1 = Clock::now();
  std::vector<int32_t> next(batch);
  for (int d = 0; d < decode; ++d) {
    for (int s = 0; s < batch; ++s) {
      next[s] = static_cast<int32_t>((d * 31 + s) % c.vocab_size);
      in[s] = {std::span<const int32_t>(&next[s], 1), prompt + d, tables[s], false};
    }
    if (auto st = m.forward(in, *kv, logits); !st) die(st.message());
  }
  auto t2 = Clock::now();
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
  SequenceInput in{prompt, 0, table, false};
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
  auto backend = make_cuda_backend(device);
  if (!backend) die(backend.error().message);
  const auto t_load = Clock::now();
  auto loaded = load_model(model, **backend, false);
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
  return ok ? 0 : 1;
}

#endif  // GHOSTD_HAVE_CUDA
