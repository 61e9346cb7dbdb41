// The integer path of the 32-value block types (gemm_block32_int8.h): x
// rounded to 8 bits per 32 values, each block's products summed in integers. Every build (AVX2's maddubs, AVX-512, AVX512-VNNI's
// dpbusd) gives the same bits, batch and split invariant, and the CPU backend
// takes it by default.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "runtime/core/backend.h"
#include "runtime/core/dtype.h"
#include "runtime/core/quant_blocks.h"
#include "runtime/cpu/gemm.h"
#include "tests/unit/runtime/cpu/int8_reference.h"

using namespace ghostd::runtime;
using namespace ghostd::runtime::cpu;

namespace {

using Q8Fn = bool (*)(const Q8Rows&, const Weight&, int64_t, int64_t, float*, int64_t);

// The integer kernels this CPU runs, AVX2 first.
std::vector<std::pair<Q8Fn, const char*>> q8_kernels() {
  std::vector<std::pair<Q8Fn, const char*>> k;
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return k;
  k.emplace_back(gemm_q8_avx2, "avx2");
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    k.emplace_back(gemm_q8_avx512, "avx512");
    if (__builtin_cpu_supports("avx512vnni")) k.emplace_back(gemm_q8_avx512vnni, "avx512vnni");
  }
  return k;
}

// Random blocks of a 32-value type: any quants (Q8_0's -128 included, every
// qh bit), scales in [0.001, 0.05), Q4_1/Q5_1 mins in [-0.4, 0.4).
std::vector<uint8_t> random_blocks(DType d, int64_t n_values, std::mt19937& rng) {
  std::vector<uint8_t> bytes(dtype_bytes(d, n_values));
  for (auto& b : bytes) b = static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> scale(0.001f, 0.05f), min(-0.4f, 0.4f);
  const bool has_min = d == DType::kQ4_1 || d == DType::kQ5_1;
  for (size_t off = 0; off < bytes.size(); off += dtype_block_bytes(d)) {
    const uint16_t h = f32_to_f16(scale(rng));
    std::memcpy(&bytes[off], &h, 2);
    if (has_min) {
      const uint16_t m = f32_to_f16(min(rng));
      std::memcpy(&bytes[off + 2], &m, 2);
    }
  }
  return bytes;
}

std::vector<uint8_t> random_q8_0(int64_t n_values, std::mt19937& rng) {
  return random_blocks(DType::kQ8_0, n_values, rng);
}

constexpr DType kTypes[] = {DType::kQ8_0, DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1};

std::vector<float> run(Q8Fn f, const std::vector<float>& x, int rows, const Weight& w,
                       int64_t split) {
  Q8Rows xq;
  xq.resize(rows, static_cast<int>(w.cols), false, true);
  quantize_q8_avx2(x.data(), 0, rows, xq);
  std::vector<float> out(static_cast<size_t>(rows) * w.rows, -1.0f);
  CHECK(f(xq, w, 0, split, out.data(), w.rows));
  CHECK(f(xq, w, split, w.rows, out.data(), w.rows));
  return out;
}

}  // namespace

TEST_CASE(
    "int8 32-value block kernels: quantized x times the weights exactly, the same bits in every "
    "build, batch-invariant") {
  const auto kernels = q8_kernels();
  if (kernels.empty()) return;
  std::mt19937 rng(31);
  std::uniform_real_distribution<float> u(-1, 1);
  // 5 and 7 blocks: the VNNI build's last block in its one-block step.
  for (DType dtype : kTypes)
    for (int cols : {32 * 5, 32 * 7, 256, 1536}) {
      CAPTURE(dtype_name(dtype));
      CAPTURE(cols);
      const int n = 37, rows = 11;
      const auto bytes = random_blocks(dtype, int64_t{n} * cols, rng);
      std::vector<float> deq(static_cast<size_t>(n) * cols);
      dequantize_row(dtype, bytes.data(), deq.data(), static_cast<int64_t>(deq.size()));
      std::vector<float> x(static_cast<size_t>(rows) * cols);
      // Row 0 larger, and an all-zero block in row 2.
      for (size_t i = 0; i < x.size(); ++i) {
        const bool zero =
            i >= static_cast<size_t>(2 * cols + 32) && i < static_cast<size_t>(2 * cols + 64);
        x[i] = zero ? 0.0f : u(rng) * (i < static_cast<size_t>(cols) ? 11.0f : 1.0f);
      }
      // x as the kernels quantize it: per 32 values d = amax / 127, q = round-to-even(x * (127 /
      // amax)).
      std::vector<double> xq(x.size());
      for (size_t b = 0; b < x.size() / 32; ++b) {
        float amax = 0;
        for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[32 * b + i]));
        const float id = amax > 0 ? 127.0f / amax : 0.0f, dx = amax / 127.0f;
        for (int i = 0; i < 32; ++i)
          xq[32 * b + i] = static_cast<double>(dx) * std::nearbyint(x[32 * b + i] * id);
      }
      const Weight w{dtype, n, cols, bytes.data()};
      std::vector<float> first;
      for (const auto& k : kernels) {
        const Q8Fn f = k.first;
        const char* isa = k.second;  // a plain variable: CAPTURE's lambda takes it (not a binding)
        CAPTURE(isa);
        const auto out = run(f, x, rows, w, 13);
        double worst_exact = 0, worst_float = 0;
        for (int r = 0; r < rows; ++r) {
          // One row alone, in one call: the same bits (batch and split invariance).
          const std::vector<float> xr(x.begin() + static_cast<ptrdiff_t>(r) * cols,
                                      x.begin() + static_cast<ptrdiff_t>(r + 1) * cols);
          const auto one = run(f, xr, 1, w, n);
          for (int j = 0; j < n; ++j) {
            const auto e = testing::int8_errors(out[static_cast<size_t>(r) * n + j], &xq[static_cast<size_t>(r) * cols],
                                                &x[static_cast<size_t>(r) * cols], &deq[static_cast<size_t>(j) * cols], cols);
            worst_exact = std::max(worst_exact, e.exact);
            worst_float = std::max(worst_float, e.vs_float);
            CHECK(std::memcmp(&out[static_cast<size_t>(r) * n + j], &one[static_cast<size_t>(j)],
                              sizeof(float)) == 0);
          }
        }
        // The integer sums are exact: what is left is float32 rounding of the
        // scales and sums; against float x, the rounding of x to 8 bits.
        INFO("worst relative error: against quantized x " << worst_exact << ", against float x "
                                                          << worst_float);
        CHECK(worst_exact <= 1e-6);
        CHECK(worst_float <= 2e-3);
        if (first.empty())
          first = out;
        else
          CHECK(std::memcmp(first.data(), out.data(), out.size() * sizeof(float)) == 0);
      }
    }
}

TEST_CASE("int8 32-value block kernels refuse x without its per-32 form, and other dtypes") {
  const auto kernels = q8_kernels();
  if (kernels.empty()) return;
  std::mt19937 rng(37);
  const auto bytes = random_q8_0(int64_t{4} * 256, rng);
  const auto q5 = random_blocks(DType::kQ5_1, int64_t{4} * 256, rng);
  const Weight w{DType::kQ8_0, 4, 256, bytes.data()}, w5{DType::kQ5_1, 4, 256, q5.data()};
  std::vector<float> x(256, 0.5f), out(4);
  Q8Rows xq;
  xq.resize(1, 256);  // per 256 only (the K-quants' form)
  quantize_q8_avx2(x.data(), 0, 1, xq);
  const Weight f32{DType::kF32, 1, 256, x.data()};
  for (const auto& k : kernels) {
    const Q8Fn f = k.first;
    const char* isa = k.second;
    CAPTURE(isa);
    CHECK_FALSE(f(xq, w, 0, 4, out.data(), 4));
    CHECK_FALSE(f(xq, w5, 0, 4, out.data(), 4));
    CHECK_FALSE(f(xq, f32, 0, 1, out.data(), 1));
  }
}

TEST_CASE(
    "the CPU backend's 32-value block path: integers by default, float on request, the kernels' "
    "bits on any thread count") {
  const auto kernels = q8_kernels();
  // GHOSTD_CPU_ISA=generic picks kernels with no integer path.
  if (kernels.empty() || std::string(select_kernels().isa) == "generic") return;
  std::mt19937 rng(41);
  std::uniform_real_distribution<float> u(-1, 1);
  for (DType dtype : {DType::kQ8_0, DType::kQ4_0, DType::kQ5_1}) {
    CAPTURE(dtype_name(dtype));
    const int cols = 1536, rows = 9, n = 45;
    const auto bytes = random_blocks(dtype, int64_t{n} * cols, rng);
    const Weight w{dtype, n, cols, bytes.data()};
    std::vector<float> x(static_cast<size_t>(rows) * cols);
    for (auto& v : x) v = u(rng);
    const auto integer = run(kernels.back().first, x, rows, w, n);
    std::vector<float> floats(integer.size());
    select_kernels().gemm(x.data(), rows, w, 0, n, floats.data(),
                          n);  // the float kernels (no block-32 integer path there)
    CHECK(floats != integer);
    for (const char* mode : {"", "int8", "float"}) {
      CAPTURE(mode);
      if (*mode)
        setenv("GHOSTD_CPU_BLOCK32", mode, 1);
      else
        unsetenv("GHOSTD_CPU_BLOCK32");
      const bool int8 = std::string(mode) != "float";
      for (int threads : {1, 2, 3}) {
        CAPTURE(threads);
        auto be = make_cpu_backend({.threads = threads});
        CHECK((be->name().find("-int8b32") != std::string::npos) == int8);
        std::vector<float> got(integer.size()), grouped(integer.size()), gate(integer.size()),
            up(integer.size()), glu(integer.size());
        be->matmul(x.data(), rows, w, nullptr, got.data());
        CHECK(got == (int8 ? integer : floats));
        std::vector<Projection> ps{{&w, nullptr, grouped.data()}};
        be->matmul_group(x.data(), rows, ps);
        CHECK(grouped == got);
        be->matmul_glu(x.data(), rows, w, w, GluAct::kSilu, gate.data(), up.data(), glu.data());
        CHECK(gate == got);
        CHECK(up == got);
      }
    }
    unsetenv("GHOSTD_CPU_BLOCK32");
    // The AVX2 kernels on an AVX-512 machine: the same bits.
    setenv("GHOSTD_CPU_ISA", "avx2", 1);
    auto be = make_cpu_backend({.threads = 2});
    CHECK(be->name() == "cpu-avx2-int8k-int8b32");
    std::vector<float> got(integer.size());
    be->matmul(x.data(), rows, w, nullptr, got.data());
    CHECK(got == integer);
    unsetenv("GHOSTD_CPU_ISA");
  }
}
