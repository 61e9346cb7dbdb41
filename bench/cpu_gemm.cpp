// CPU matmul throughput: the backend's matmul (its kernels and thread split)
// on the projection shapes of a model, for several row counts (1 = decode,
// 512 = a prefill chunk), beside the FMA peak and read bandwidth probed in the
// same run (bench/cpu_probes.h). Prints GFLOP/s, % of peak, and for row
// counts up to 8 the weight GB/s and % of bandwidth.
//
//   bench_cpu_gemm [--threads N] [--dtype q8_0|q4_0|q4_1|q5_0|q5_1|f16|bf16|f32] [--hidden 1536]
//                  [--intermediate 8960] [--rows 1,8,64,512] [--reps 5] [--no-probe]
//                  [--memory vector|huge|mapped]
//
// --memory says where the weight copies live: vector (malloc'd anonymous
// memory, 4 KiB pages unless THP is "always"), huge (anonymous memory asked
// for 2 MiB pages, as the CPU backend holds weights) or mapped (a mapped
// file's page cache, as the loader maps GGUF and safetensors files).
// --mapped is --memory mapped.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "bench/bench_util.h"
#include "bench/cpu_probes.h"
#include "runtime/core/backend.h"
#include "runtime/core/dtype.h"
#include "runtime/core/mapped_file.h"
#include "runtime/cpu/host_memory.h"

using namespace ghostd::runtime;
using Clock = std::chrono::steady_clock;
using ghostd::bench::median;

namespace {

// Random weights of `rows` x `cols` in `dtype`, values in [-1, 1).
std::vector<uint8_t> make_weight(DType dtype, int64_t rows, int64_t cols, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> row(static_cast<size_t>(cols));
  std::vector<uint8_t> bytes(dtype_bytes(dtype, rows * cols));
  const size_t row_bytes = dtype_bytes(dtype, cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (auto& v : row) v = u(rng);
    uint8_t* dst = bytes.data() + static_cast<size_t>(r) * row_bytes;
    switch (dtype) {
      case DType::kF32: std::memcpy(dst, row.data(), row_bytes); break;
      case DType::kF16:
        for (int64_t k = 0; k < cols; ++k) {
          const uint16_t h = f32_to_f16(row[static_cast<size_t>(k)]);
          std::memcpy(dst + 2 * k, &h, 2);
        }
        break;
      case DType::kBF16:
        for (int64_t k = 0; k < cols; ++k) {
          const uint16_t h = f32_to_bf16(row[static_cast<size_t>(k)]);
          std::memcpy(dst + 2 * k, &h, 2);
        }
        break;
      case DType::kQ8_0: quantize_row_q8_0(row.data(), dst, cols); break;
      default: {
        // Q4_0, Q4_1, Q5_0, Q5_1: random quants (timing only), sane f16 scale and min.
        for (size_t i = 0; i < row_bytes; ++i) dst[i] = static_cast<uint8_t>(rng());
        const uint16_t d = f32_to_f16(0.01f), m = f32_to_f16(-0.05f);
        const bool has_min = dtype == DType::kQ4_1 || dtype == DType::kQ5_1;
        for (size_t off = 0; off < row_bytes; off += dtype_block_bytes(dtype)) {
          std::memcpy(dst + off, &d, 2);
          if (has_min) std::memcpy(dst + off + 2, &m, 2);
        }
        break;
      }
    }
  }
  return bytes;
}

// A float array on a 64-byte boundary.
struct AlignedFloats {
  explicit AlignedFloats(size_t n)
      : n_(n), p_(static_cast<float*>(std::aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64))) {}
  ~AlignedFloats() { std::free(p_); }
  AlignedFloats(const AlignedFloats&) = delete;
  AlignedFloats& operator=(const AlignedFloats&) = delete;
  float* data() { return p_; }
  float* begin() { return p_; }
  float* end() { return p_ + n_; }

 private:
  size_t n_;
  float* p_;
};

}  // namespace

int main(int argc, char** argv) {
  int threads = 0, hidden = 1536, inter = 8960, reps = 5;
  std::string dtype_name = "q8_0", rows_list = "1,8,64,512";
  bool probe = true;
  std::string memory = "vector";
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--no-probe") {
      probe = false;
      continue;
    }
    if (k == "--mapped") {
      memory = "mapped";
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s needs a value\n", k.c_str());
      return 2;
    }
    const std::string v = argv[++i];
    if (k == "--threads") threads = std::atoi(v.c_str());
    else if (k == "--dtype") dtype_name = v;
    else if (k == "--hidden") hidden = std::atoi(v.c_str());
    else if (k == "--intermediate") inter = std::atoi(v.c_str());
    else if (k == "--rows") rows_list = v;
    else if (k == "--reps") reps = std::atoi(v.c_str());
    else if (k == "--memory" && (v == "vector" || v == "huge" || v == "mapped")) memory = v;
    else {
      std::fprintf(stderr,
                   "usage: bench_cpu_gemm [--threads N] [--dtype q8_0|q4_0|q4_1|q5_0|q5_1|f16|bf16|f32] [--hidden 1536] "
                   "[--intermediate 8960] [--rows 1,8,64,512] [--reps 5] [--no-probe] "
                   "[--memory vector|huge|mapped]\n");
      return 2;
    }
  }
  DType dtype = DType::kQ8_0;
  if (dtype_name == "f16") dtype = DType::kF16;
  else if (dtype_name == "bf16") dtype = DType::kBF16;
  else if (dtype_name == "f32") dtype = DType::kF32;
  else if (dtype_name == "q4_0") dtype = DType::kQ4_0;
  else if (dtype_name == "q4_1") dtype = DType::kQ4_1;
  else if (dtype_name == "q5_0") dtype = DType::kQ5_0;
  else if (dtype_name == "q5_1") dtype = DType::kQ5_1;
  else if (dtype_name != "q8_0") {
    std::fprintf(stderr, "unknown --dtype %s\n", dtype_name.c_str());
    return 2;
  }
  auto backend = make_cpu_backend({.threads = threads});
  const int nthreads = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
  const char* isa = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") ? "avx512"
                    : __builtin_cpu_supports("avx2")                                       ? "avx2"
                                                                                           : "scalar";
  if (const char* forced = std::getenv("GHOSTD_CPU_ISA")) isa = forced;
  double peak = 0, bandwidth = 0;
  if (probe) {
    peak = ghostd::bench::probe_fma_peak(isa, 1) * nthreads;
    bandwidth = ghostd::bench::probe_read_bandwidth(nthreads, size_t{1024} << 20);
    std::printf("probe: read bandwidth on 4 KiB pages (malloc) %.2f GB/s\n",
                ghostd::bench::probe_read_bandwidth(nthreads, size_t{1024} << 20, 3, false));
    std::printf("probe: FMA peak %.1f GFLOP/s (%s, 1 core x %d threads); read bandwidth %.2f GB/s\n", peak, isa,
                nthreads, bandwidth);
  }
  std::printf("backend %s, weights %s, median of %d\n", backend->name().c_str(), dtype_name.c_str(), reps);
  struct Shape {
    const char* name;
    int n, k;
  };
  const Shape shapes[] = {{"qo", hidden, hidden}, {"gate/up", inter, hidden}, {"down", hidden, inter}};
  std::mt19937 rng(7);
  std::printf("%-8s %6s %6s %6s %10s %10s %8s %10s %8s\n", "shape", "n", "k", "rows", "ms", "GFLOP/s", "% peak",
              "weight GB/s", "% bw");
  for (const Shape& s : shapes) {
    // Copies of the weight, 1 GiB in all, cycled through so that every call
    // streams its weight from memory, as a model far larger than the caches
    // does (64 MB still hit this VM's L3 and read at 130% of the probe).
    const size_t wbytes = dtype_bytes(dtype, int64_t{s.n} * s.k);
    const int copies = std::max<int>(2, static_cast<int>((size_t{1} << 30) / wbytes));
    std::vector<std::vector<uint8_t>> w;
    w.push_back(make_weight(dtype, s.n, s.k, rng));
    std::vector<const uint8_t*> wp;
    std::optional<MappedFile> file;
    ghostd::runtime::cpu::HostRegion region;
    if (memory == "mapped") {
      const auto path = std::filesystem::temp_directory_path() / ("bench_cpu_gemm." + std::to_string(::getpid()));
      {
        std::ofstream out(path, std::ios::binary);
        for (int c = 0; c < copies; ++c) out.write(reinterpret_cast<const char*>(w[0].data()), static_cast<std::streamsize>(wbytes));
      }
      auto mf = MappedFile::open(path);
      std::filesystem::remove(path);
      if (!mf) {
        std::fprintf(stderr, "%s\n", mf.error().message.c_str());
        return 1;
      }
      file.emplace(std::move(*mf));
      for (int c = 0; c < copies; ++c)
        wp.push_back(reinterpret_cast<const uint8_t*>(file->bytes().data()) + static_cast<size_t>(c) * wbytes);
    } else if (memory == "huge") {
      region = ghostd::runtime::cpu::HostRegion(wbytes * static_cast<size_t>(copies));
      if (region.data() == nullptr) {
        std::fprintf(stderr, "cannot allocate %zu bytes\n", wbytes * static_cast<size_t>(copies));
        return 1;
      }
      for (int c = 0; c < copies; ++c) {
        auto* dst = static_cast<uint8_t*>(region.data()) + static_cast<size_t>(c) * wbytes;
        std::memcpy(dst, w[0].data(), wbytes);
        wp.push_back(dst);
      }
    } else {
      for (int c = 1; c < copies; ++c) w.push_back(w[0]);
      for (const auto& v : w) wp.push_back(v.data());
    }
    for (int rows : ghostd::bench::parse_int_list(rows_list)) {
      // 64-byte aligned, as the backend's own buffers are.
      AlignedFloats x(static_cast<size_t>(rows) * s.k), out(static_cast<size_t>(rows) * s.n);
      std::uniform_real_distribution<float> u(-1, 1);
      for (auto& v : x) v = u(rng);
      std::vector<double> ms;
      int next = 0;
      for (int r = 0; r < reps + 1; ++r) {
        // Enough calls for ~20 ms, cycling through the copies.
        const int calls = std::max(1, static_cast<int>(2e9 / (2.0 * rows * s.n * s.k)));
        const auto t0 = Clock::now();
        for (int c = 0; c < calls; ++c) {
          Weight wt{dtype, s.n, s.k, wp[static_cast<size_t>(next)]};
          next = (next + 1) % copies;
          backend->matmul(x.data(), rows, wt, nullptr, out.data());
        }
        const double t = std::chrono::duration<double>(Clock::now() - t0).count() * 1e3 / calls;
        if (r > 0) ms.push_back(t);  // the first is a warm-up
      }
      const double t = median(ms);
      const double gflops = 2.0 * rows * s.n * s.k / (t * 1e-3) / 1e9;
      const double gbs = static_cast<double>(wbytes) / (t * 1e-3) / 1e9;
      std::printf("%-8s %6d %6d %6d %10.3f %10.1f %7.0f%% %10.2f %7.0f%%\n", s.name, s.n, s.k, rows, t, gflops,
                  peak > 0 ? 100 * gflops / peak : 0.0, gbs, bandwidth > 0 && rows <= 8 ? 100 * gbs / bandwidth : 0.0);
      std::fflush(stdout);
    }
  }
  return 0;
}
