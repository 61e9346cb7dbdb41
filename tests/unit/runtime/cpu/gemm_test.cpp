#include "runtime/cpu/gemm.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "runtime/core/quant_blocks.h"
#include "tests/unit/runtime/cpu/int8_reference.h"

using namespace ghostd::runtime;
using namespace ghostd::runtime::cpu;

namespace {

struct Packed {
  std::vector<uint8_t> bytes;
  std::vector<float> dequant;  // what the kernel should see
};

uint16_t to_f16(float f) {
  // Small exact values only (test data is chosen representable).
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint32_t s = (u >> 16) & 0x8000;
  int e = static_cast<int>((u >> 23) & 0xff) - 127 + 15;
  uint32_t m = (u >> 13) & 0x3ff;
  if ((u & 0x7fffffff) == 0) return static_cast<uint16_t>(s);
  return static_cast<uint16_t>(s | (e << 10) | m);
}

Packed pack(DType d, const std::vector<float>& w, int cols) {
  Packed p;
  if (d == DType::kF32) {
    p.bytes.resize(w.size() * 4);
    std::memcpy(p.bytes.data(), w.data(), p.bytes.size());
    p.dequant = w;
  } else if (d == DType::kBF16 || d == DType::kF16) {
    p.bytes.resize(w.size() * 2);
    for (size_t i = 0; i < w.size(); ++i) {
      uint16_t h = d == DType::kBF16 ? f32_to_bf16(w[i]) : to_f16(w[i]);
      std::memcpy(&p.bytes[2 * i], &h, 2);
      p.dequant.push_back(d == DType::kBF16 ? bf16_to_f32(h) : f16_to_f32(h));
    }
  } else {
    for (size_t b = 0; b < w.size() / 32; ++b) {
      float amax = 0;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(w[b * 32 + j]));
      uint16_t d16 = to_f16(amax > 0 ? std::ldexp(1.0f, static_cast<int>(std::ceil(std::log2(amax / 127)))) : 1.0f);
      float dd = f16_to_f32(d16);
      p.bytes.push_back(d16 & 0xff);
      p.bytes.push_back(d16 >> 8);
      for (int j = 0; j < 32; ++j) {
        int q = static_cast<int>(std::lround(w[b * 32 + j] / dd));
        q = std::max(-127, std::min(127, q));
        p.bytes.push_back(static_cast<uint8_t>(static_cast<int8_t>(q)));
        p.dequant.push_back(dd * q);
      }
    }
  }
  (void)cols;
  return p;
}

}  // namespace

TEST_CASE("gemm kernels match a double-precision reference and are batch-invariant") {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<GemmFn> impls{gemm_generic};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) impls.push_back(gemm_avx2);
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) impls.push_back(gemm_avx512);
  for (DType d : {DType::kF32, DType::kBF16, DType::kF16, DType::kQ8_0}) {
    for (int cols : {32, 96, 200, 256}) {
      if (d == DType::kQ8_0 && cols % 32) continue;
      const int n = 37, rows = 7;
      std::vector<float> wf(static_cast<size_t>(n) * cols), x(static_cast<size_t>(rows) * cols);
      for (auto& v : wf) v = std::round(u(rng) * 64) / 64;  // exact in f16 and bf16
      for (auto& v : x) v = u(rng);
      Packed p = pack(d, wf, cols);
      Weight w{d, n, cols, p.bytes.data()};
      for (GemmFn g : impls) {
        std::vector<float> out(static_cast<size_t>(rows) * n), one(n);
        g(x.data(), rows, w, 0, 20, out.data(), n);
        g(x.data(), rows, w, 20, n, out.data(), n);
        for (int r = 0; r < rows; ++r) {
          g(x.data() + static_cast<size_t>(r) * cols, 1, w, 0, n, one.data(), n);
          for (int j = 0; j < n; ++j) {
            double ref = 0;
            for (int k = 0; k < cols; ++k) ref += static_cast<double>(x[r * cols + k]) * p.dequant[j * cols + k];
            CHECK(out[r * n + j] == doctest::Approx(ref).epsilon(1e-4).scale(cols));
            // A row computed alone gives the same bits as inside a batch.
            CHECK(std::memcmp(&out[r * n + j], &one[j], sizeof(float)) == 0);
          }
        }
      }
    }
  }
}

TEST_CASE("dot and axpy kernels agree with the reference") {
  std::vector<float> a(77), b(77), y(77, 1.0f), y2(77, 1.0f);
  for (int i = 0; i < 77; ++i) {
    a[i] = std::sin(i * 0.3f);
    b[i] = std::cos(i * 0.7f);
  }
  double ref = 0;
  for (int i = 0; i < 77; ++i) ref += static_cast<double>(a[i]) * b[i];
  CHECK(dot_generic(a.data(), b.data(), 77) == doctest::Approx(ref).epsilon(1e-5));
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return;
  CHECK(dot_avx2(a.data(), b.data(), 77) == doctest::Approx(ref).epsilon(1e-5));
  axpy_avx2(0.5f, a.data(), y.data(), 77);
  axpy_generic(0.5f, a.data(), y2.data(), 77);
  for (int i = 0; i < 77; ++i) CHECK(y[i] == doctest::Approx(y2[i]));
}

TEST_CASE("attention span passes have the bits of per-row dot and axpy, for one head or a group sharing the rows") {
  // KV rows scattered in a pool (as paged KV is), head sizes with and
  // without the blocked paths' multiples, row counts around the row groups,
  // and head counts around the head groups (the heads of a GQA group share
  // each row's loads; results and outputs at strides, as partials are).
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  constexpr int kMaxHeads = 13;
  std::vector<float> pool(64 * 160), q(kMaxHeads * 160);
  for (float& v : pool) v = u(rng);
  for (float& v : q) v = u(rng);
  Kernels k = select_kernels();
  for (int n : {64, 77, 80, 96, 128, 160}) {
    for (int count : {0, 1, 3, 4, 5, 8, 37}) {
      for (int heads : {1, 2, 3, 4, 5, 6, 7, 13}) {
        CAPTURE(n);
        CAPTURE(count);
        CAPTURE(heads);
        std::vector<int64_t> rows(count);
        for (int i = 0; i < count; ++i) rows[i] = static_cast<int64_t>((i * 29 + 11) % 64) * 160;
        const int64_t stride = count + 3, o_stride = n + 5;
        std::vector<float> w(static_cast<size_t>(heads) * stride);
        for (float& v : w) v = u(rng);
        struct Pair {
          float (*dot)(const float*, const float*, int);
          void (*axpy)(float, const float*, float*, int);
          SpanScoresFn scores;
          SpanValuesFn values;
        };
        const bool generic = std::string(k.isa) == "generic";
        for (const Pair& f : {Pair{dot_generic, axpy_generic, span_scores_generic, span_values_generic},
                              Pair{generic ? dot_generic : dot_avx2, generic ? axpy_generic : axpy_avx2,
                                   k.span_scores, k.span_values}}) {
          std::vector<float> got(w.size(), -1.0f), o(heads * o_stride, 0.25f), o_ref(heads * o_stride, 0.25f);
          f.scores(q.data(), heads, pool.data(), rows.data(), count, n, got.data(), stride);
          f.values(w.data(), stride, heads, pool.data(), rows.data(), count, n, o.data(), o_stride);
          for (int h = 0; h < heads; ++h) {
            for (int i = 0; i < count; ++i) CHECK(got[h * stride + i] == f.dot(q.data() + h * n, pool.data() + rows[i], n));
            for (int i = count; i < stride; ++i) CHECK(got[h * stride + i] == -1.0f);
            for (int i = 0; i < count; ++i) f.axpy(w[h * stride + i], pool.data() + rows[i], o_ref.data() + h * o_stride, n);
          }
          CHECK(std::memcmp(o.data(), o_ref.data(), sizeof(float) * o.size()) == 0);
        }
      }
    }
  }
}

namespace {

// Random ggml blocks: random quant bytes, with the f16 scale fields set to
// small finite values (random bits there could be inf or NaN).
std::vector<uint8_t> random_blocks(DType d, int64_t n_values, std::mt19937& rng) {
  std::vector<uint8_t> bytes(dtype_bytes(d, n_values));
  for (auto& b : bytes) b = static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> scale(0.001f, 0.05f);
  const size_t bb = dtype_block_bytes(d);
  std::vector<size_t> f16_fields;
  switch (d) {
    case DType::kQ4_0:
    case DType::kQ5_0: f16_fields = {0}; break;
    case DType::kQ6_K: f16_fields = {208}; break;
    default: f16_fields = {0, 2}; break;
  }
  for (size_t off = 0; off < bytes.size(); off += bb) {
    for (size_t f : f16_fields) {
      const uint16_t h = f32_to_f16(scale(rng));
      std::memcpy(&bytes[off + f], &h, 2);
    }
  }
  return bytes;
}

}  // namespace

TEST_CASE("gemm kernels on ggml block types match the dequantized reference and are batch-invariant") {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<std::pair<GemmFn, const char*>> impls{{gemm_generic, "generic"}};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) impls.emplace_back(gemm_avx2, "avx2");
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) impls.emplace_back(gemm_avx512, "avx512");
  for (DType d : {DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K}) {
    const int cols = static_cast<int>(dtype_block_elems(d)) * 3;
    const int n = 37, rows = 9;
    const auto bytes = random_blocks(d, static_cast<int64_t>(n) * cols, rng);
    std::vector<float> deq(static_cast<size_t>(n) * cols);
    dequantize_row(d, bytes.data(), deq.data(), static_cast<int64_t>(deq.size()));
    std::vector<float> x(static_cast<size_t>(rows) * cols);
    for (auto& v : x) v = u(rng);
    Weight w{d, n, cols, bytes.data()};
    for (const auto& impl : impls) {
      const GemmFn g = impl.first;
      const char* isa = impl.second;  // a plain variable: CAPTURE's lambda takes it (not a binding)
      CAPTURE(dtype_name(d));
      CAPTURE(isa);
      std::vector<float> out(static_cast<size_t>(rows) * n), one(n);
      g(x.data(), rows, w, 0, 11, out.data(), n);
      g(x.data(), rows, w, 11, n, out.data(), n);
      for (int r = 0; r < rows; ++r) {
        g(x.data() + static_cast<size_t>(r) * cols, 1, w, 0, n, one.data(), n);
        for (int j = 0; j < n; ++j) {
          double ref = 0, mag = 0;
          for (int k = 0; k < cols; ++k) {
            ref += static_cast<double>(x[r * cols + k]) * deq[static_cast<size_t>(j) * cols + k];
            mag += std::fabs(static_cast<double>(x[r * cols + k]) * deq[static_cast<size_t>(j) * cols + k]);
          }
          CHECK(std::fabs(out[r * n + j] - ref) <= 1e-5 * mag + 1e-6);
          CHECK(std::memcmp(&out[r * n + j], &one[j], sizeof(float)) == 0);
        }
      }
      // One-hot rows pick single weights: the kernel's unpacked block values
      // equal the reference dequantization exactly.
      std::vector<float> eye(static_cast<size_t>(cols) * cols, 0.0f), picked(static_cast<size_t>(cols) * n);
      for (int k = 0; k < cols; ++k) eye[static_cast<size_t>(k) * cols + k] = 1.0f;
      g(eye.data(), cols, w, 0, n, picked.data(), n);
      size_t differ = 0;
      for (int k = 0; k < cols; ++k) {
        for (int j = 0; j < n; ++j) {
          if (picked[static_cast<size_t>(k) * n + j] != deq[static_cast<size_t>(j) * cols + k]) ++differ;
        }
      }
      CHECK(differ == 0);
    }
  }
}

TEST_CASE("gemm kernels give every row the same bits at every row count, column split and chunked length") {
  // Row counts on both sides of the register-blocked path's threshold and of
  // its tiles, rows longer than its k chunk (with a tail), column ranges
  // that cut its weight panels and tiles anywhere.
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<std::pair<GemmFn, const char*>> impls{{gemm_generic, "generic"}};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) impls.emplace_back(gemm_avx2, "avx2");
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) impls.emplace_back(gemm_avx512, "avx512");
  for (DType d : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0, DType::kQ5_K, DType::kQ4_K,
                  DType::kQ6_K}) {
    const bool block = dtype_is_quantized(d);
    const int be = static_cast<int>(dtype_block_elems(d));
    for (int cols : {block ? be * 5 : 1100, block ? (2304 / be) * be : 2069}) {
      const int n = 29, rows = 21;
      std::vector<uint8_t> bytes;
      if (block && d != DType::kQ8_0) {
        bytes = random_blocks(d, static_cast<int64_t>(n) * cols, rng);
      } else {
        std::vector<float> wf(static_cast<size_t>(n) * cols);
        for (auto& v : wf) v = std::round(u(rng) * 64) / 64;
        bytes = pack(d, wf, cols).bytes;
      }
      std::vector<float> x(static_cast<size_t>(rows) * cols);
      for (auto& v : x) v = u(rng);
      Weight w{d, n, cols, bytes.data()};
      for (const auto& impl : impls) {
        const std::string isa = impl.second, dtype = dtype_name(d);
        CAPTURE(isa);
        CAPTURE(dtype);
        CAPTURE(cols);
        // Reference: each row alone over all columns.
        std::vector<float> alone(static_cast<size_t>(rows) * n);
        for (int r = 0; r < rows; ++r)
          impl.first(x.data() + static_cast<size_t>(r) * cols, 1, w, 0, n, alone.data() + static_cast<size_t>(r) * n, n);
        for (int count : {2, 3, 4, 5, 6, 7, 8, 9, 17, 21}) {
          for (int64_t split : {int64_t{7}, int64_t{13}, int64_t{16}}) {
            std::vector<float> out(static_cast<size_t>(count) * n, -1.0f);
            impl.first(x.data(), count, w, 0, split, out.data(), n);
            impl.first(x.data(), count, w, split, n, out.data(), n);
            size_t differ = 0;
            for (size_t i = 0; i < out.size(); ++i)
              if (std::memcmp(&out[i], &alone[i], sizeof(float)) != 0) ++differ;
            CAPTURE(count);
            CAPTURE(split);
            CHECK(differ == 0);
          }
        }
      }
    }
  }
}


TEST_CASE("int8 K-quant kernels: quantized x times the dequantized weights, batch-invariant, near float") {
  std::mt19937 rng(23);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<std::pair<GemmFn, const char*>> impls;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) impls.emplace_back(gemm_avx2_k8, "avx2");
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) impls.emplace_back(gemm_avx512_k8, "avx512");
  if (impls.empty()) return;
  for (DType d : {DType::kQ4_K, DType::kQ5_K, DType::kQ6_K}) {
    const int cols = 256 * 4, n = 29, rows = 11;
    const auto bytes = random_blocks(d, static_cast<int64_t>(n) * cols, rng);
    std::vector<float> deq(static_cast<size_t>(n) * cols);
    dequantize_row(d, bytes.data(), deq.data(), static_cast<int64_t>(deq.size()));
    std::vector<float> x(static_cast<size_t>(rows) * cols);
    for (auto& v : x) v = u(rng) * (1.0f + 10.0f * static_cast<float>(&v - x.data() < cols));  // row 0 larger
    std::fill(x.begin() + 2 * cols + 256, x.begin() + 2 * cols + 512, 0.0f);  // an all-zero block
    // x as the kernels quantize it: per 256 values d = amax / 127, q = round-to-even(x * (127 / amax)).
    std::vector<double> xq(x.size());
    for (int r = 0; r < rows; ++r)
      for (int b = 0; b < cols / 256; ++b) {
        const float* xb = x.data() + static_cast<size_t>(r) * cols + 256 * b;
        float amax = 0;
        for (int i = 0; i < 256; ++i) amax = std::max(amax, std::fabs(xb[i]));
        const float id = amax > 0 ? 127.0f / amax : 0.0f, dx = amax / 127.0f;
        for (int i = 0; i < 256; ++i)
          xq[static_cast<size_t>(r) * cols + 256 * b + i] = static_cast<double>(dx) * std::nearbyint(xb[i] * id);
      }
    Weight w{d, n, cols, bytes.data()};
    for (const auto& impl : impls) {
      const char* isa = impl.second;
      CAPTURE(isa);
      CAPTURE(dtype_name(d));
      std::vector<float> out(static_cast<size_t>(rows) * n), one(n);
      impl.first(x.data(), rows, w, 0, 13, out.data(), n);
      impl.first(x.data(), rows, w, 13, n, out.data(), n);
      double worst_exact = 0, worst_float = 0;
      for (int r = 0; r < rows; ++r) {
        impl.first(x.data() + static_cast<size_t>(r) * cols, 1, w, 0, n, one.data(), n);
        for (int j = 0; j < n; ++j) {
          const auto e = testing::int8_errors(out[static_cast<size_t>(r) * n + j], &xq[static_cast<size_t>(r) * cols],
                                              &x[static_cast<size_t>(r) * cols], &deq[static_cast<size_t>(j) * cols], cols);
          worst_exact = std::max(worst_exact, e.exact);
          worst_float = std::max(worst_float, e.vs_float);
          CHECK(std::memcmp(&out[static_cast<size_t>(r) * n + j], &one[j], sizeof(float)) == 0);
        }
      }
      // The integer sums are exact: what is left is float32 rounding of the
      // scales; against float x, the rounding of x to 8 bits.
      INFO("worst relative error: against quantized x " << worst_exact << ", against float x " << worst_float);
      CHECK(worst_exact <= 1e-6);  // measured 3e-8
      CHECK(worst_float <= 2e-3);
    }
    // The AVX-512 kernels (two pieces per instruction) give the AVX2 kernels' bits.
    if (impls.size() == 2) {
      std::vector<float> a(static_cast<size_t>(rows) * n), b(a.size());
      impls[0].first(x.data(), rows, w, 0, n, a.data(), n);
      impls[1].first(x.data(), rows, w, 0, n, b.data(), n);
      CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
    }
    // So do the two-step kernels the backend calls, the VNNI build's included.
    std::vector<float> a(static_cast<size_t>(rows) * n);
    impls[0].first(x.data(), rows, w, 0, n, a.data(), n);
    Q8Rows q;
    q.resize(rows, cols);
    quantize_q8_avx2(x.data(), 0, rows, q);
    std::vector<std::pair<bool (*)(const Q8Rows&, const Weight&, int64_t, int64_t, float*, int64_t), const char*>>
        two_step{{gemm_q8_avx2, "avx2"}};
    if (impls.size() == 2) two_step.emplace_back(gemm_q8_avx512, "avx512");
    if (impls.size() == 2 && __builtin_cpu_supports("avx512vnni")) two_step.emplace_back(gemm_q8_avx512vnni, "vnni");
    for (const auto& k : two_step) {
      const char* build = k.second;
      CAPTURE(build);
      std::vector<float> b(a.size());
      CHECK(k.first(q, w, 0, 7, b.data(), n));
      CHECK(k.first(q, w, 7, n, b.data(), n));
      CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("the CPU backend's int8 K-quant path (the default): x quantized once per call, the kernels' bits on any thread count; float on request") {
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return;
  // The kernels the backend picks (GHOSTD_CPU_ISA may ask for AVX2 on an AVX-512 machine).
  const std::string isa = select_kernels().isa;
  if (isa == "generic") return;
  const bool avx512 = isa == "avx512";
  const GemmFn direct = avx512 ? gemm_avx512_k8 : gemm_avx2_k8;
  std::mt19937 rng(29);
  std::uniform_real_distribution<float> u(-1, 1);
  const int cols = 512, rows = 9;
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<Weight> ws;
  const DType types[] = {DType::kQ4_K, DType::kQ6_K, DType::kQ5_K, DType::kQ8_0};
  const int ns[] = {40, 24, 17, 33};
  for (int i = 0; i < 4; ++i) {
    bytes.push_back(random_blocks(types[i], int64_t{ns[i]} * cols, rng));  // Q8_0: the float path beside them
    ws.push_back(Weight{types[i], ns[i], cols, bytes.back().data()});
  }
  std::vector<float> x(size_t(rows) * cols);
  for (auto& v : x) v = u(rng);
  unsetenv("GHOSTD_CPU_KQUANT");  // the default
  setenv("GHOSTD_CPU_BLOCK32", "float", 1);  // Q8_0 in floats beside them (its integer path: gemm_int8_block32_test)
  for (int threads : {1, 2, 3}) {
    CAPTURE(threads);
    auto be = make_cpu_backend({.threads = threads});
    CHECK(be->name().find("-int8k") != std::string::npos);
    std::vector<std::vector<float>> alone(4), grouped(4);
    std::vector<Projection> ps;
    for (int i = 0; i < 4; ++i) {
      CAPTURE(i);
      alone[i].assign(size_t(rows) * ns[i], 0.0f);
      grouped[i].assign(size_t(rows) * ns[i], 0.0f);
      be->matmul(x.data(), rows, ws[size_t(i)], nullptr, alone[i].data());
      std::vector<float> want(size_t(rows) * ns[i]);
      direct(x.data(), rows, ws[size_t(i)], 0, ns[i], want.data(), ns[i]);
      CHECK(alone[i] == want);
      ps.push_back({&ws[size_t(i)], nullptr, grouped[i].data()});
    }
    // Another x first: the group must quantize its own.
    std::vector<float> x2(x.size()), scratch(size_t(rows) * ns[0]);
    for (auto& v : x2) v = u(rng);
    be->matmul(x2.data(), rows, ws[0], nullptr, scratch.data());
    be->matmul_group(x.data(), rows, ps);
    for (int i = 0; i < 4; ++i) CHECK(grouped[i] == alone[i]);
  }
  // GHOSTD_CPU_KQUANT=float keeps float32 activations: the float kernels' bits.
  setenv("GHOSTD_CPU_KQUANT", "float", 1);
  const GemmFn float_kernel = avx512 ? gemm_avx512 : gemm_avx2;
  for (int threads : {1, 2}) {
    CAPTURE(threads);
    auto be = make_cpu_backend({.threads = threads});
    CHECK(be->name().find("-int8k") == std::string::npos);
    for (int i = 0; i < 3; ++i) {
      CAPTURE(i);
      std::vector<float> got(size_t(rows) * ns[i]), want(got.size());
      be->matmul(x.data(), rows, ws[size_t(i)], nullptr, got.data());
      float_kernel(x.data(), rows, ws[size_t(i)], 0, ns[i], want.data(), ns[i]);
      CHECK(got == want);
    }
  }
  unsetenv("GHOSTD_CPU_KQUANT");
  unsetenv("GHOSTD_CPU_BLOCK32");
}

TEST_CASE("k_scales_mins unpacks the eight K-quant scales and mins as k_scale_min does") {
  std::mt19937 rng(31);
  for (int trial = 0; trial < 20000; ++trial) {
    unsigned char q[12];
    for (auto& b : q) b = static_cast<unsigned char>(rng());
    uint8_t sc[8], m[8];
    quant::k_scales_mins(q, sc, m);
    for (int j = 0; j < 8; ++j) {
      int want_sc = 0, want_m = 0;
      quant::k_scale_min(j, q, want_sc, want_m);
      REQUIRE(sc[j] == want_sc);
      REQUIRE(m[j] == want_m);
    }
  }
}
