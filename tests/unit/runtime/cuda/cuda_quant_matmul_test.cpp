// The CUDA backend's block-quantized matmul and embedding (kernels/
// quant_matmul, runtime/cuda/quant_weights) against the CPU backend on
// tests/data/quant/tiny-qwen2-mixed.gguf (every GGUF block type that
// llama-quantize wrote) and on Q8_0 rows. Exits 77 (skipped) where CUDA is not
// compiled in or no device is visible (ctest label `gpu`).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "runtime/core/backend.h"
#include "tests/unit/skip.h"
#ifdef GHOSTD_HAVE_CUDA
#include "runtime/cuda/cuda_backend.h"
#include "runtime/model/gguf.h"
#endif

using namespace ghostd::runtime;

#ifndef GHOSTD_HAVE_CUDA

TEST_CASE("cuda block-quantized matmul matches the cpu backend") {
  ghostd::test::skip("CUDA backend not compiled (GHOSTD_CUDA=OFF)");
}

#else

namespace {

std::vector<float> randv(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// `n` floats or ints on one backend, uploaded from the host.
template <class T>
Buffer upload(Backend& be, const std::vector<T>& v) {
  Buffer b = be.alloc(v.size() * sizeof(T)).value();
  be.upload(b.get(), v.data(), v.size() * sizeof(T));
  return b;
}

std::vector<float> download(Backend& be, const Buffer& b, size_t n) {
  std::vector<float> v(n);
  be.download(v.data(), b.get(), n * sizeof(float));
  return v;
}

// Every |got - want| <= abs + rel * max|want|.
void expect_close(const std::vector<float>& got, const std::vector<float>& want, double rel, double abs) {
  REQUIRE(got.size() == want.size());
  double scale = 0, worst = 0;
  size_t at = 0;
  for (float w : want) scale = std::max(scale, std::fabs(double(w)));
  for (size_t i = 0; i < got.size(); ++i) {
    const double e = std::isnan(got[i]) ? INFINITY : std::fabs(double(got[i]) - want[i]);
    if (e > worst) worst = e, at = i;
  }
  INFO("worst |cuda - cpu| " << worst << " at " << at << ", max |cpu| " << scale);
  CHECK(worst <= abs + rel * scale);
}

struct Fixture {
  std::unique_ptr<Backend> gpu;
  std::unique_ptr<Backend> cpu = make_cpu_backend({.threads = 2});
  bool skip = false;
  Fixture() {
    if (cuda_device_count() == 0) {
      ghostd::test::skip("no CUDA device");
      skip = true;
      return;
    }
    auto r = make_cuda_backend(0);
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
    gpu = std::move(*r);
  }
};

const std::string kMixed = std::string(GHOSTD_TEST_DATA) + "/quant/tiny-qwen2-mixed.gguf";

// Both backends' product of x ([rows, k]) with `t`, plus a bias when given.
void check_matmul(Fixture& f, const TensorView& t, int rows, const TensorView* bias) {
  Backend &cpu = *f.cpu, &gpu = *f.gpu;
  const int64_t n = t.shape[0], k = t.shape[1];
  Weight wc = cpu.load_weight(t).value();
  auto wg = gpu.load_weight(t);
  REQUIRE_MESSAGE(wg.ok(), (wg.ok() ? "" : wg.error().message));
  CHECK(wg->dtype == t.dtype);  // the blocks themselves, no dequantized copy
  Weight bc, bg;
  if (bias) bc = cpu.load_weight(*bias).value(), bg = gpu.load_weight(*bias).value();
  const auto x = randv(static_cast<size_t>(rows * k), static_cast<uint32_t>(11 + rows));
  Buffer xc = upload(cpu, x), xg = upload(gpu, x);
  const size_t outn = static_cast<size_t>(rows * n);
  Buffer oc = cpu.alloc(outn * 4).value(), og = gpu.alloc(outn * 4).value();
  cpu.matmul(xc.as<float>(), rows, wc, bias ? &bc : nullptr, oc.as<float>());
  gpu.matmul(xg.as<float>(), rows, *wg, bias ? &bg : nullptr, og.as<float>());
  auto st = gpu.synchronize();
  REQUIRE_MESSAGE(st.ok(), st.message());
  const auto got = download(gpu, og, outn);
  // Same decoded values on both sides; only the float summation order differs.
  expect_close(got, download(cpu, oc, outn), 1e-5, 1e-5);
  // Batch invariance: each row alone gives the bits it gave in the batch.
  if (rows > 1) {
    Buffer o1 = gpu.alloc(static_cast<size_t>(n) * 4).value();
    for (int r : {0, rows - 1}) {
      gpu.matmul(xg.as<float>() + static_cast<int64_t>(r) * k, 1, *wg, bias ? &bg : nullptr, o1.as<float>());
      const auto alone = download(gpu, o1, static_cast<size_t>(n));
      CHECK(std::memcmp(alone.data(), got.data() + static_cast<size_t>(r) * n, alone.size() * 4) == 0);
    }
  }
}

}  // namespace

TEST_CASE("cuda block-quantized matmul matches the cpu backend on llama-quantize's blocks") {
  Fixture f;
  if (f.skip) return;
  auto g = GgufFile::open(kMixed);
  REQUIRE_MESSAGE(g.ok(), (g.ok() ? "" : g.error().message));
  const TensorView* bias = g->find_tensor("blk.0.attn_q.bias");
  REQUIRE(bias != nullptr);
  std::vector<DType> seen;
  for (const char* name : {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight",
                           "blk.0.attn_output.weight", "blk.0.ffn_gate.weight", "blk.0.ffn_up.weight",
                           "blk.0.ffn_down.weight", "token_embd.weight"}) {
    const TensorView* t = g->find_tensor(name);
    REQUIRE_MESSAGE(t != nullptr, name);
    REQUIRE(t->shape.size() == 2);
    seen.push_back(t->dtype);
    for (int rows : {1, 3, 8, 9, 64}) {
      CAPTURE(name);
      CAPTURE(dtype_name(t->dtype));
      CAPTURE(rows);
      const bool with_bias = std::string(name) == "blk.0.attn_q.weight" && bias->shape[0] == t->shape[0];
      check_matmul(f, *t, rows, with_bias ? bias : nullptr);
    }
  }
  for (DType d : {DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K}) {
    CHECK_MESSAGE(std::find(seen.begin(), seen.end(), d) != seen.end(), dtype_name(d));
  }
}

TEST_CASE("cuda Q8_0 matmul decodes the blocks in the kernel") {
  Fixture f;
  if (f.skip) return;
  const int64_t n = 96, k = 256;
  const auto w = randv(static_cast<size_t>(n * k), 5);
  std::vector<std::byte> blocks(dtype_bytes(DType::kQ8_0, n * k));
  quantize_row_q8_0(w.data(), blocks.data(), n * k);
  const TensorView t{"w", DType::kQ8_0, {n, k}, blocks.data(), blocks.size()};
  for (int rows : {1, 5, 17}) {
    CAPTURE(rows);
    check_matmul(f, t, rows, nullptr);
  }
}

// The embedding op decodes whole rows: every block type against the values
// ggml's reference dequantization gave (tests/data/README.md), bit for bit.
TEST_CASE("cuda decoding of every block type is bit-exact against ggml (embedding rows)") {
  Fixture f;
  if (f.skip) return;
  auto g = GgufFile::open(kMixed);
  REQUIRE(g.ok());
  for (const char* name : {"blk.0.attn_q", "blk.0.attn_k", "blk.0.attn_v", "blk.0.attn_output", "blk.0.ffn_gate",
                           "blk.0.ffn_up", "blk.0.ffn_down", "token_embd"}) {
    CAPTURE(name);
    const TensorView* t = g->find_tensor(std::string(name) + ".weight");
    REQUIRE(t != nullptr);
    CAPTURE(dtype_name(t->dtype));
    std::ifstream in(std::string(GHOSTD_TEST_DATA) + "/quant/" + name + ".f32", std::ios::binary);
    REQUIRE(in);
    std::vector<char> raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const int dim = static_cast<int>(t->shape[1]);
    const auto rows = static_cast<int32_t>(raw.size() / 4 / static_cast<size_t>(dim));  // token_embd: the first 64
    REQUIRE(rows > 0);
    std::vector<int32_t> ids(static_cast<size_t>(rows));
    for (int32_t i = 0; i < rows; ++i) ids[static_cast<size_t>(i)] = i;
    Weight wg = f.gpu->load_weight(*t).value();
    Buffer ig = upload(*f.gpu, ids);
    const size_t outn = ids.size() * static_cast<size_t>(dim);
    Buffer og = f.gpu->alloc(outn * 4).value();
    f.gpu->embedding(wg, ig.as<int32_t>(), rows, og.as<float>());
    auto st = f.gpu->synchronize();
    REQUIRE_MESSAGE(st.ok(), st.message());
    const auto got = download(*f.gpu, og, outn);
    REQUIRE(raw.size() == outn * 4);
    CHECK(std::memcmp(got.data(), raw.data(), raw.size()) == 0);
  }
}

#endif
