// CUDA backend op timings on Qwen2-1.5B shapes, no model needed: matmul as
// weight GB/s and TFLOP/s in each linear mode (GHOSTD_CUDA_LINEAR: the
// batch-invariant tensor-core kernel, the gemv in chunks, and the fast
// non-invariant choice of gemv up to 8 rows and cuBLAS above, with the cost
// of invariance as a ratio), paged attention for decode at several context lengths (KV GB/s),
// and the small ops' per-call time. Each figure is `iters` back-to-back calls
// then one synchronize, so launch overhead hides behind kernels that run
// longer than a launch.
//
//   bench_gpu_ops [--device 0] [--iters 50] [--peak-gbs 0]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "runtime/core/backend.h"
#ifdef GHOSTD_HAVE_CUDA
#include "kernels/linear_mma.cuh"
#include "runtime/cuda/cuda_backend.h"
#endif

using namespace ghostd::runtime;

#ifndef GHOSTD_HAVE_CUDA
int main() {
  std::printf("bench_gpu_ops: built without CUDA (GHOSTD_CUDA=OFF): skipped\n");
  return 77;
}
#else

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "bench_gpu_ops: %s\n", what.c_str());
  std::exit(1);
}

Buffer alloc_random(Backend& be, size_t floats, uint32_t seed, float scale = 0.5f) {
  auto b = be.alloc(floats * sizeof(float));
  if (!b) die(b.error().message);
  // A cheap LCG: the values only need to be varied and bounded.
  std::vector<float> v(floats);
  uint32_t r = seed * 2654435761u + 1;
  for (auto& x : v) {
    r = r * 1664525u + 1013904223u;
    x = scale * (static_cast<float>(r >> 8) / 8388608.0f - 1.0f);
  }
  be.upload(b->get(), v.data(), v.size() * sizeof(float));
  return std::move(*b);
}

// Seconds per call of `op`, median-free: one warm-up call, then `iters` calls.
double time_op(Backend& be, int iters, const std::function<void()>& op) {
  op();
  if (auto st = be.synchronize(); !st) die(st.message());
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) op();
  if (auto st = be.synchronize(); !st) die(st.message());
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
}

}  // namespace

int main(int argc, char** argv) {
  int device = 0, iters = 50;
  double peak = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--device")
      device = std::atoi(argv[i + 1]);
    else if (k == "--iters")
      iters = std::atoi(argv[i + 1]);
    else if (k == "--peak-gbs")
      peak = std::atof(argv[i + 1]);
  }
  if (cuda_device_count() == 0) {
    std::printf("bench_gpu_ops: no CUDA device: skipped\n");
    return 77;
  }
  auto info = cuda_device_info(device);
  if (!info) die(info.error().message);
  if (peak <= 0) peak = info->peak_bandwidth_gbs;
  auto made = make_cuda_backend(device);
  if (!made) die(made.error().message);
  Backend& be = **made;
  std::printf("device %s, peak DRAM %.0f GB/s, %d iterations per figure\n", info->name.c_str(),
              peak, iters);

  // Matmul: bf16 weights [n, k] as in Qwen2-1.5B.
  struct Shape {
    const char* name;
    int n, k;
  };
  const Shape shapes[] = {{"q/o 1536x1536", 1536, 1536},
                          {"k/v 256x1536", 256, 1536},
                          {"gate/up 8960x1536", 8960, 1536},
                          {"down 1536x8960", 1536, 8960},
                          {"lm_head 151936x1536", 151936, 1536}};
  const int max_rows = 2048;
  // One backend per linear mode (the mode is read when a backend is made).
  const char* const modes[] = {"invariant", "fast", "gemv"};
  std::vector<std::unique_ptr<Backend>> by_mode;
  for (const char* m : modes) {
    setenv("GHOSTD_CUDA_LINEAR", m, 1);
    auto b = make_cuda_backend(device);
    if (!b) die(b.error().message);
    by_mode.push_back(std::move(*b));
  }
  unsetenv("GHOSTD_CUDA_LINEAR");
  std::printf("\n%-22s %6s %10s %10s %9s %9s %10s %10s %10s\n", "matmul (bf16)", "rows",
              "inv us", "inv GB/s", "of peak", "TFLOP/s", "fast us", "gemv us", "inv/fast");
  for (const Shape& s : shapes) {
    const size_t wbytes = size_t(s.n) * s.k * 2;
    std::vector<uint16_t> host(size_t(s.n) * s.k);
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> u(-0.05f, 0.05f);
    for (auto& h : host) h = f32_to_bf16(u(rng));
    TensorView tv{
        s.name, DType::kBF16, {s.n, s.k}, reinterpret_cast<const std::byte*>(host.data()), wbytes};
    std::vector<Buffer> xs, outs;
    std::vector<Weight> ws;
    for (auto& mb : by_mode) {
      auto w = mb->load_weight(tv);
      if (!w) die(w.error().message);
      ws.push_back(*w);
      xs.push_back(alloc_random(*mb, size_t(max_rows) * s.k, 1));
      auto o = mb->alloc(size_t(max_rows) * s.n * sizeof(float));
      if (!o) die(o.error().message);
      outs.push_back(std::move(*o));
    }
    for (int rows : {1, 8, 32, 33, 128, 2048}) {
      double sec[3] = {0, 0, 0};
      for (size_t m = 0; m < by_mode.size(); ++m) {
        if (m == 2 && rows > 128) continue;  // CUDA cores: minutes at prefill sizes
        Backend& mb = *by_mode[m];
        sec[m] = time_op(mb, iters, [&] {
          mb.matmul(xs[m].as<float>(), rows, ws[m], nullptr, outs[m].as<float>());
        });
      }
      const double gbs = wbytes / sec[0] / 1e9;
      char gemv[16] = "-";
      if (sec[2] > 0) std::snprintf(gemv, sizeof gemv, "%.2f", sec[2] * 1e6);
      std::printf("%-22s %6d %10.2f %10.1f %8.1f%% %9.1f %10.2f %10s %9.2fx\n", s.name, rows,
                  sec[0] * 1e6, gbs, 100 * gbs / peak, 2.0 * rows * s.n * s.k / sec[0] / 1e12,
                  sec[1] * 1e6, gemv, sec[0] / sec[1]);
    }
    // The skinny kernel's knobs at decode sizes: warps the slices of k aim
    // at (S, the slices, follows) and chunks loaded ahead per warp.
    std::printf("  %-20s %6s %8s %6s %8s %10s %9s\n", "skinny tuning", "rows", "target", "S", "unroll",
                "us/call", "of peak");
    for (int rows : {1, 8}) {
      for (int target : {512, 1024, 2048}) {
        for (int unroll : {4, 8, 16}) {
          ghostd::kernels::linear_mma_tune(target, unroll);
          Backend& mb = *by_mode[0];
          const double sec = time_op(mb, iters, [&] {
            mb.matmul(xs[0].as<float>(), rows, ws[0], nullptr, outs[0].as<float>());
          });
          std::printf("  %-20s %6d %8d %6d %8d %10.2f %8.1f%%\n", "", rows, target,
                      ghostd::kernels::linear_mma_slices(s.n, s.k), unroll, sec * 1e6,
                      100 * wbytes / sec / 1e9 / peak);
        }
      }
    }
    ghostd::kernels::linear_mma_tune(1024, 8);
    // Above 32 rows: the tiled kernel against 32-row groups of the skinny one.
    for (int rows : {33, 64, 128}) {
      double sec[2];
      for (int i = 0; i < 2; ++i) {
        ghostd::kernels::linear_mma_tune(0, 0, i == 0 ? 32 : 128);
        Backend& mb = *by_mode[0];
        sec[i] = time_op(mb, iters, [&] {
          mb.matmul(xs[0].as<float>(), rows, ws[0], nullptr, outs[0].as<float>());
        });
      }
      std::printf("  %-20s %6d  tiled %8.2f us, skinny groups %8.2f us\n", "", rows, sec[0] * 1e6,
                  sec[1] * 1e6);
    }
    ghostd::kernels::linear_mma_tune(0, 0, 32);
  }
  by_mode.clear();

  // Decode attention, Qwen2-1.5B heads (12 query, 2 KV, head_dim 128).
  const int nh = 12, nkv = 2, hd = 128, bs = 16, kv_dim = nkv * hd;
  std::printf("\n%-22s %6s %10s %10s\n", "attention decode", "ctx", "us/call", "KV GB/s");
  for (int batch : {1, 8}) {
    for (int ctx : {128, 1024, 4096, 32768}) {
      const int blocks_per_seq = (ctx + bs - 1) / bs;
      Buffer K = alloc_random(be, size_t(batch) * blocks_per_seq * bs * kv_dim, 4);
      Buffer V = alloc_random(be, size_t(batch) * blocks_per_seq * bs * kv_dim, 5);
      Buffer q = alloc_random(be, size_t(batch) * nh * hd, 6);
      Buffer o = alloc_random(be, size_t(batch) * nh * hd, 7);
      std::vector<int32_t> pos, slots, seq, len, first{0}, tstart{0}, tables;
      for (int s = 0; s < batch; ++s) {
        pos.push_back(ctx - 1);
        slots.push_back((s * blocks_per_seq + (ctx - 1) / bs) * bs + (ctx - 1) % bs);
        seq.push_back(s);
        len.push_back(ctx);
        first.push_back(s + 1);
        for (int b = 0; b < blocks_per_seq; ++b) tables.push_back(s * blocks_per_seq + b);
        tstart.push_back(static_cast<int32_t>(tables.size()));
      }
      std::vector<Buffer> keep;
      auto dev = [&](const std::vector<int32_t>& v) {
        auto b = be.alloc(v.size() * 4);
        if (!b) die(b.error().message);
        be.upload(b->get(), v.data(), v.size() * 4);
        keep.push_back(std::move(*b));
        return keep.back().as<int32_t>();
      };
      BatchView bv{batch,    batch,    bs,         dev(pos),    dev(slots),
                   dev(seq), dev(len), dev(first), dev(tstart), dev(tables)};
      const double sec = time_op(be, iters, [&] {
        be.attention(q.as<float>(), bv, {nh, nkv, hd, 1.0f / std::sqrt(float(hd))},
                     {K.as<float>(), V.as<float>()}, o.as<float>());
      });
      const double kv_bytes = 2.0 * batch * ctx * kv_dim * sizeof(float);
      std::printf("batch %-16d %6d %10.2f %10.1f\n", batch, ctx, sec * 1e6, kv_bytes / sec / 1e9);
    }
  }

  // Small ops at decode size: these are launch-bound.
  const int H = 1536, I = 8960;
  std::vector<uint16_t> nw(H, f32_to_bf16(1.0f));
  auto norm = be.load_weight(
      TensorView{"norm", DType::kBF16, {H}, reinterpret_cast<const std::byte*>(nw.data()), H * 2});
  if (!norm) die(norm.error().message);
  Buffer a = alloc_random(be, I, 8), b = alloc_random(be, I, 9), c = alloc_random(be, I, 10);
  std::printf("\n%-22s %10s\n", "small op (1 row)", "us/call");
  std::printf("%-22s %10.2f\n", "rms_norm 1536", 1e6 * time_op(be, iters, [&] {
                                                   be.rms_norm(a.as<float>(), *norm, 1, H, 1e-6f,
                                                               b.as<float>());
                                                 }));
  std::printf("%-22s %10.2f\n", "silu_mul 8960",
              1e6 * time_op(be, iters,
                            [&] { be.silu_mul(a.as<float>(), b.as<float>(), I, c.as<float>()); }));
  std::printf("%-22s %10.2f\n", "add 1536",
              1e6 * time_op(be, iters, [&] { be.add(c.as<float>(), a.as<float>(), H); }));
  return 0;
}

#endif  // GHOSTD_HAVE_CUDA
