// The CUDA backend against the CPU backend (the reference), op by op, with a
// per-op tolerance. Exits 77 (skipped) where CUDA is not compiled in or no
// device is visible (ctest label `gpu`).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "runtime/core/backend.h"
#include "tests/unit/skip.h"
#ifdef GHOSTD_HAVE_CUDA
#include "runtime/cuda/cuda_backend.h"
#endif

using namespace ghostd::runtime;

#ifndef GHOSTD_HAVE_CUDA

TEST_CASE("cuda backend matches the cpu backend") {
  ghostd::test::skip("CUDA backend not compiled (GHOSTD_CUDA=OFF)");
}

#else

namespace {

std::vector<float> randv(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// Host bytes of a [rows, cols] weight in `dtype` (kept alive for the CPU
// backend, which uses weights in place).
std::vector<std::byte> weight_bytes(DType dtype, int64_t rows, int64_t cols, uint32_t seed,
                                    float scale = 0.1f) {
  const auto f = randv(static_cast<size_t>(rows * cols), seed, scale);
  std::vector<std::byte> out(dtype_bytes(dtype, rows * cols));
  auto* u16 = reinterpret_cast<uint16_t*>(out.data());
  switch (dtype) {
    case DType::kF32:
      std::memcpy(out.data(), f.data(), f.size() * 4);
      break;
    case DType::kF16:
      for (size_t i = 0; i < f.size(); ++i) u16[i] = f32_to_f16(f[i]);
      break;
    case DType::kBF16:
      for (size_t i = 0; i < f.size(); ++i) u16[i] = f32_to_bf16(f[i]);
      break;
    case DType::kQ8_0:
      quantize_row_q8_0(f.data(), out.data(), rows * cols);
      break;
    default:
      FAIL("no test encoder for " << dtype_name(dtype));
  }
  return out;
}

// The same data on both backends.
struct Mirror {
  Backend& cpu;
  Backend& gpu;
  Buffer c, g;
  size_t bytes;
  Mirror(Backend& cpu_be, Backend& gpu_be, const void* src, size_t n_bytes)
      : cpu(cpu_be),
        gpu(gpu_be),
        c(cpu_be.alloc(n_bytes).value()),
        g(gpu_be.alloc(n_bytes).value()),
        bytes(n_bytes) {
    if (src) {
      cpu.upload(c.get(), src, bytes);
      gpu.upload(g.get(), src, bytes);
    } else {
      cpu.fill_zero(c.get(), bytes);
      gpu.fill_zero(g.get(), bytes);
    }
  }
  template <class T>
  static Mirror of(Backend& cpu_be, Backend& gpu_be, const std::vector<T>& v) {
    return Mirror(cpu_be, gpu_be, v.data(), v.size() * sizeof(T));
  }
  float* cf() { return c.as<float>(); }
  float* gf() { return g.as<float>(); }
  int32_t* ci() { return c.as<int32_t>(); }
  int32_t* gi() { return g.as<int32_t>(); }
  std::vector<float> cpu_floats() {
    std::vector<float> v(bytes / 4);
    cpu.download(v.data(), c.get(), bytes);
    return v;
  }
  std::vector<float> gpu_floats() {
    std::vector<float> v(bytes / 4);
    gpu.download(v.data(), g.get(), bytes);
    return v;
  }
};

// Passes when every |got - want| <= abs + rel * max|want|.
void expect_close(const std::vector<float>& got, const std::vector<float>& want, double rel,
                  double abs, const std::string& what) {
  REQUIRE(got.size() == want.size());
  double scale = 0, worst = 0;
  size_t at = 0;
  for (float w : want) scale = std::max(scale, std::fabs(double(w)));
  for (size_t i = 0; i < got.size(); ++i) {
    const double e = std::isnan(got[i]) ? INFINITY : std::fabs(double(got[i]) - want[i]);
    if (e > worst) worst = e, at = i;
  }
  INFO(what << ": worst |cuda - cpu| " << worst << " at " << at << ", max |cpu| " << scale);
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
  void sync() {
    auto st = gpu->synchronize();
    REQUIRE_MESSAGE(st.ok(), st.message());
  }
};

const char* dname(DType d) {
  return dtype_name(d);
}

}  // namespace

TEST_CASE("make_cuda_backend reports a missing device as an error") {
  auto r = make_cuda_backend(cuda_device_count() + 3);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("no CUDA device") != std::string::npos);
}

TEST_CASE("cuda backend memory: alloc failure is a value, round trips are exact") {
  Fixture f;
  if (f.skip) return;
  auto huge = f.gpu->alloc(size_t(1) << 52);
  CHECK_FALSE(huge.ok());
  CHECK(f.gpu->free_memory() > 0);
  auto v = randv(1000, 1);
  Mirror m = Mirror::of(*f.cpu, *f.gpu, v);
  CHECK(m.gpu_floats() == v);
  f.gpu->fill_zero(m.gf(), 400);
  auto z = m.gpu_floats();
  CHECK(std::all_of(z.begin(), z.begin() + 100, [](float x) { return x == 0.0f; }));
  CHECK(z[100] == v[100]);
  f.sync();
}

TEST_CASE("cuda embedding, rms_norm and elementwise ops match the cpu backend") {
  Fixture f;
  if (f.skip) return;
  Backend &cpu = *f.cpu, &gpu = *f.gpu;
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0}) {
    for (int dim : {64, 1536}) {
      CAPTURE(dname(dt));
      CAPTURE(dim);
      const int vocab = 50, n = 7;
      auto table = weight_bytes(dt, vocab, dim, 2, 1.0f);
      TensorView tv{"embed", dt, {vocab, dim}, table.data(), table.size()};
      Weight wc = *cpu.load_weight(tv), wg = *gpu.load_weight(tv);
      std::vector<int32_t> ids{3, 0, 49, 3, 17, 1, 48};
      Mirror mi = Mirror::of(cpu, gpu, ids), x(cpu, gpu, nullptr, size_t(n) * dim * 4);
      cpu.embedding(wc, mi.ci(), n, x.cf());
      gpu.embedding(wg, mi.gi(), n, x.gf());
      // Q8_0 becomes F16 on the GPU: one f16 rounding of scale * quant.
      expect_close(x.gpu_floats(), x.cpu_floats(), dt == DType::kQ8_0 ? 1e-3 : 0, 0, "embedding");

      auto nwb = weight_bytes(dt == DType::kQ8_0 ? DType::kF32 : dt, 1, dim, 3, 1.0f);
      TensorView nv{"norm", dt == DType::kQ8_0 ? DType::kF32 : dt, {dim}, nwb.data(), nwb.size()};
      Weight nc = *cpu.load_weight(nv), ng = *gpu.load_weight(nv);
      Mirror y(cpu, gpu, nullptr, size_t(n) * dim * 4);
      // The same input on both sides (the CPU's embedding output).
      auto xin = x.cpu_floats();
      gpu.upload(x.gf(), xin.data(), xin.size() * 4);
      cpu.rms_norm(x.cf(), nc, n, dim, 1e-6f, y.cf());
      gpu.rms_norm(x.gf(), ng, n, dim, 1e-6f, y.gf());
      expect_close(y.gpu_floats(), y.cpu_floats(), 1e-6, 1e-6, "rms_norm");
      f.sync();
    }
  }

  const int64_t n = 100003;
  auto g = randv(n, 4, 6.0f), u = randv(n, 5);
  Mirror mg = Mirror::of(cpu, gpu, g), mu = Mirror::of(cpu, gpu, u), mo(cpu, gpu, nullptr, n * 4);
  cpu.silu_mul(mg.cf(), mu.cf(), n, mo.cf());
  gpu.silu_mul(mg.gf(), mu.gf(), n, mo.gf());
  expect_close(mo.gpu_floats(), mo.cpu_floats(), 1e-6, 1e-7, "silu_mul");
  // In place, as the model calls it (out == gate).
  Mirror mgi = Mirror::of(cpu, gpu, g);
  cpu.silu_mul(mgi.cf(), mu.cf(), n, mgi.cf());
  gpu.silu_mul(mgi.gf(), mu.gf(), n, mgi.gf());
  expect_close(mgi.gpu_floats(), mgi.cpu_floats(), 1e-6, 1e-7, "silu_mul in place");
  cpu.add(mg.cf(), mu.cf(), n);
  gpu.add(mg.gf(), mu.gf(), n);
  expect_close(mg.gpu_floats(), mg.cpu_floats(), 0, 0, "add");

  const int dim = 96;
  std::vector<int32_t> rows{5, 0, 1000, 5};
  Mirror mr = Mirror::of(cpu, gpu, rows), gat(cpu, gpu, nullptr, rows.size() * dim * 4);
  cpu.gather_rows(mg.cf(), mr.ci(), 4, dim, gat.cf());
  gpu.gather_rows(mg.gf(), mr.gi(), 4, dim, gat.gf());
  expect_close(gat.gpu_floats(), gat.cpu_floats(), 0, 0, "gather_rows");
  f.sync();
}

TEST_CASE("cuda argmax_rows picks the same token as the host: ties, NaN, vocabulary-sized rows") {
  Fixture f;
  if (f.skip) return;
  Backend &cpu = *f.cpu, &gpu = *f.gpu;
  for (int cols : {1, 7, 255, 257, 151936}) {
    CAPTURE(cols);
    const int rows = 6;
    std::vector<float> x = randv(size_t(rows) * cols, uint32_t(11 + cols), 4.0f);
    const float nan = std::nanf("");
    // Row 1: a tie between the first and last columns; row 2: NaN first and
    // around the max; row 3: all NaN; row 4: -inf everywhere but one.
    x[cols] = x[2 * cols - 1] = 100.0f;
    x[2 * cols] = nan;
    if (cols > 2) x[2 * cols + cols / 2] = nan;
    for (int c = 0; c < cols; ++c) x[3 * cols + c] = nan;
    for (int c = 0; c < cols; ++c) x[4 * cols + c] = -INFINITY;
    x[4 * cols + cols - 1] = -1.0f;
    Mirror mx = Mirror::of(cpu, gpu, x), out(cpu, gpu, nullptr, rows * 4);
    cpu.argmax_rows(mx.cf(), rows, cols, out.ci());
    gpu.argmax_rows(mx.gf(), rows, cols, out.gi());
    std::vector<int32_t> c(rows), g(rows);
    cpu.download(c.data(), out.ci(), rows * 4);
    gpu.download(g.data(), out.gi(), rows * 4);
    CHECK(c == g);
    CHECK(c[1] == 0);
    CHECK(c[3] == 0);
    CHECK(c[4] == cols - 1);
    f.sync();
  }
}

TEST_CASE("cuda matmul matches the cpu backend over dtypes, batch sizes and every path") {
  Fixture f;
  if (f.skip) return;
  Backend &cpu = *f.cpu, &gpu = *f.gpu;
  struct Shape {
    int n, k;
  };
  // k = 1536 and 96 take the batch-invariant kernels; k = 100 (not a
  // multiple of 8) falls back to cuBLAS.
  for (Shape s : {Shape{256, 1536}, Shape{300, 96}, Shape{64, 100}}) {
    for (DType dt : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0}) {
      if (dt == DType::kQ8_0 && s.k % 32 != 0) continue;
      for (int rows : {1, 3, 8, 9, 64}) {
        CAPTURE(s.n);
        CAPTURE(s.k);
        CAPTURE(dname(dt));
        CAPTURE(rows);
        auto wb = weight_bytes(dt, s.n, s.k, 7);
        TensorView tv{"w", dt, {s.n, s.k}, wb.data(), wb.size()};
        Weight wc = *cpu.load_weight(tv), wg = *gpu.load_weight(tv);
        auto bb = weight_bytes(DType::kBF16, 1, s.n, 8);
        TensorView bv{"b", DType::kBF16, {s.n}, bb.data(), bb.size()};
        Weight bc = *cpu.load_weight(bv), bg = *gpu.load_weight(bv);
        auto x = randv(size_t(rows) * s.k, 9 + rows);
        Mirror mx = Mirror::of(cpu, gpu, x), out(cpu, gpu, nullptr, size_t(rows) * s.n * 4);
        cpu.matmul(mx.cf(), rows, wc, &bc, out.cf());
        gpu.matmul(mx.gf(), rows, wg, &bg, out.gf());
        // F16/BF16 weights take activations rounded to their dtype (the
        // tensor-core kernel, or cuBLAS where k % 16 != 0); F32 weights keep
        // float activations in the gemv; Q8_0 blocks are decoded exactly
        // inside the block kernel at any batch.
        const double rel = dt == DType::kF32 || dt == DType::kQ8_0 ? 1e-5 : 1e-2;
        expect_close(out.gpu_floats(), out.cpu_floats(), rel, 1e-6, "matmul");
      }
    }
  }
  f.sync();
}

TEST_CASE("cuda rope matches the cpu backend up to 32K positions") {
  Fixture f;
  if (f.skip) return;
  Backend &cpu = *f.cpu, &gpu = *f.gpu;
  for (int hd : {64, 128}) {
    const int heads = 3, rows = 6;
    std::vector<int32_t> pos{0, 1, 17, 4095, 16384, 32767};
    std::vector<float> inv(hd / 2);
    for (int i = 0; i < hd / 2; ++i) inv[i] = std::pow(1000000.0f, -2.0f * i / hd);
    auto x = randv(size_t(rows) * heads * hd, 11);
    Mirror mx = Mirror::of(cpu, gpu, x), mp = Mirror::of(cpu, gpu, pos),
           mf = Mirror::of(cpu, gpu, inv);
    cpu.rope(mx.cf(), rows, heads, hd, mp.ci(), mf.cf());
    gpu.rope(mx.gf(), rows, heads, hd, mp.gi(), mf.gf());
    CAPTURE(hd);
    expect_close(mx.gpu_floats(), mx.cpu_floats(), 0, 2e-6, "rope");
  }
  f.sync();
}

namespace {

// One attention scenario: sequences with `cached` tokens already in the KV
// and `fresh` new tokens each, GQA shape, block size.
struct AttnCase {
  std::vector<int> cached, fresh;
  int n_heads, n_kv_heads, head_dim, block_size;
};

void run_attention(Fixture& f, const AttnCase& c) {
  Backend &cpu = *f.cpu, &gpu = *f.gpu;
  const int kv_dim = c.n_kv_heads * c.head_dim, q_dim = c.n_heads * c.head_dim;
  std::vector<int32_t> positions, slots, token_seq, kv_len, first{0}, tstart{0}, tables;
  int next_block = 0;
  for (size_t s = 0; s < c.cached.size(); ++s) {
    const int len = c.cached[s] + c.fresh[s];
    const int nb = (len + c.block_size - 1) / c.block_size;
    // Blocks handed out in reverse order so tables are not the identity.
    std::vector<int32_t> tb;
    for (int b = 0; b < nb; ++b) tb.push_back(next_block + nb - 1 - b);
    next_block += nb;
    for (int i = 0; i < c.fresh[s]; ++i) {
      const int p = c.cached[s] + i;
      positions.push_back(p);
      slots.push_back(tb[p / c.block_size] * c.block_size + p % c.block_size);
      token_seq.push_back(static_cast<int32_t>(s));
    }
    kv_len.push_back(len);
    first.push_back(static_cast<int32_t>(positions.size()));
    tables.insert(tables.end(), tb.begin(), tb.end());
    tstart.push_back(static_cast<int32_t>(tables.size()));
  }
  const int T = static_cast<int>(positions.size());
  const size_t pool = size_t(next_block) * c.block_size * kv_dim;
  auto kp = randv(pool, 21), vp = randv(pool, 22);
  auto q = randv(size_t(T) * q_dim, 23), k = randv(size_t(T) * kv_dim, 24),
       v = randv(size_t(T) * kv_dim, 25);
  Mirror K = Mirror::of(cpu, gpu, kp), V = Mirror::of(cpu, gpu, vp), mq = Mirror::of(cpu, gpu, q),
         mk = Mirror::of(cpu, gpu, k), mv = Mirror::of(cpu, gpu, v);
  Mirror mpos = Mirror::of(cpu, gpu, positions), mslot = Mirror::of(cpu, gpu, slots),
         mts = Mirror::of(cpu, gpu, token_seq), mlen = Mirror::of(cpu, gpu, kv_len),
         mfirst = Mirror::of(cpu, gpu, first), mtst = Mirror::of(cpu, gpu, tstart),
         mtab = Mirror::of(cpu, gpu, tables), out(cpu, gpu, nullptr, size_t(T) * q_dim * 4);
  const int S = static_cast<int>(c.cached.size());
  BatchView bc{T,        S,         c.block_size, mpos.ci(), mslot.ci(),
               mts.ci(), mlen.ci(), mfirst.ci(),  mtst.ci(), mtab.ci()};
  BatchView bg{T,        S,         c.block_size, mpos.gi(), mslot.gi(),
               mts.gi(), mlen.gi(), mfirst.gi(),  mtst.gi(), mtab.gi()};
  AttentionShape shape{c.n_heads, c.n_kv_heads, c.head_dim, 1.0f / std::sqrt(float(c.head_dim))};
  cpu.kv_store(mk.cf(), mv.cf(), bc, kv_dim, {K.cf(), V.cf()});
  gpu.kv_store(mk.gf(), mv.gf(), bg, kv_dim, {K.gf(), V.gf()});
  expect_close(K.gpu_floats(), K.cpu_floats(), 0, 0, "kv_store k");
  expect_close(V.gpu_floats(), V.cpu_floats(), 0, 0, "kv_store v");
  cpu.attention(mq.cf(), bc, shape, {K.cf(), V.cf()}, out.cf());
  gpu.attention(mq.gf(), bg, shape, {K.gf(), V.gf()}, out.gf());
  expect_close(out.gpu_floats(), out.cpu_floats(), 0, 2e-5, "attention");

  // Batch invariance: each sequence's rows alone (its own launch size, its
  // own max_kv_len) are bitwise the rows it got in the batch, both with the
  // batch's largest context known and unknown (all split slots launched).
  const std::vector<float> batched = out.gpu_floats();
  for (int known : {1, 0}) {
    BatchView b2 = bg;
    b2.max_kv_len = known ? *std::max_element(kv_len.begin(), kv_len.end()) : 0;
    Mirror o2(cpu, gpu, nullptr, size_t(T) * q_dim * 4);
    gpu.attention(mq.gf(), b2, shape, {K.gf(), V.gf()}, o2.gf());
    CHECK(o2.gpu_floats() == batched);
  }
  for (int s = 0; s < S; ++s) {
    CAPTURE(s);
    const int n = first[s + 1] - first[s];
    BatchView one = bg;
    one.num_tokens = n;
    one.positions = mpos.gi() + first[s];
    one.slots = mslot.gi() + first[s];
    one.token_seq = mts.gi() + first[s];  // still indexes the full tables
    one.max_kv_len = kv_len[s];
    Mirror o1(cpu, gpu, nullptr, size_t(n) * q_dim * 4);
    gpu.attention(mq.gf() + size_t(first[s]) * q_dim, one, shape, {K.gf(), V.gf()}, o1.gf());
    const std::vector<float> alone = o1.gpu_floats();
    CHECK(std::equal(alone.begin(), alone.end(), batched.begin() + size_t(first[s]) * q_dim));
  }

  if (next_block >= 3) {
    // Ordered copies with hazards (a source later overwritten, a destination
    // later read): the GPU splits them into waves and must match in-order copies.
    const KvBlockCopy copies[] = {{0, next_block - 1}, {1, 0}, {next_block - 1, 1}, {2, next_block - 2}};
    KvLayerView lc{K.cf(), V.cf()}, lg{K.gf(), V.gf()};
    cpu.copy_kv_blocks(std::span<const KvLayerView>(&lc, 1), copies, c.block_size, kv_dim);
    gpu.copy_kv_blocks(std::span<const KvLayerView>(&lg, 1), copies, c.block_size, kv_dim);
    expect_close(K.gpu_floats(), K.cpu_floats(), 0, 0, "copy_kv_blocks k");
    expect_close(V.gpu_floats(), V.cpu_floats(), 0, 0, "copy_kv_blocks v");
  }
  f.sync();
}

}  // namespace

TEST_CASE("cuda kv_store, paged attention and copy_kv_block match the cpu backend") {
  Fixture f;
  if (f.skip) return;
  const std::vector<AttnCase> cases = {
      // decode, batch 1, short and long (split-K path)
      {{5}, {1}, 12, 2, 128, 16},
      {{4000}, {1}, 12, 2, 128, 16},
      // decode, batch 3 with ragged contexts, head_dim 64, MHA
      {{0, 33, 700}, {1, 1, 1}, 8, 8, 64, 16},
      // chunked prefill next to a decode; head_dim 80 (not a multiple of 32)
      {{100, 7}, {37, 1}, 4, 2, 80, 8},
      // prefills with enough blocks for the unsplit path: GQA group of 7
      // heads per block, and one head per block (MHA)
      {{0}, {300}, 14, 2, 64, 16},
      {{20}, {100}, 4, 4, 64, 16},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    CAPTURE(i);
    run_attention(f, cases[i]);
  }
}

TEST_CASE("cuda attention over a 32K context matches the cpu backend") {
  Fixture f;
  if (f.skip) return;
  run_attention(f, {{32767}, {1}, 12, 2, 128, 16});
  run_attention(f, {{32000, 1000}, {2, 1}, 8, 1, 128, 32});
}

TEST_CASE("cuda backend reports op failures through synchronize, then recovers") {
  Fixture f;
  if (f.skip) return;
  Backend& gpu = *f.gpu;
  Buffer q = gpu.alloc(4096).value();
  BatchView b{1,
              1,
              16,
              q.as<int32_t>(),
              q.as<int32_t>(),
              q.as<int32_t>(),
              q.as<int32_t>(),
              q.as<int32_t>(),
              q.as<int32_t>(),
              q.as<int32_t>()};
  gpu.attention(q.as<float>(), b, {1, 1, 512, 1.0f}, {q.as<float>(), q.as<float>()}, q.as<float>());
  Status st = gpu.synchronize();
  REQUIRE_FALSE(st.ok());
  CHECK(st.message().find("head_dim 512") != std::string::npos);
  CHECK(gpu.synchronize().ok());
}

#endif  // GHOSTD_HAVE_CUDA
