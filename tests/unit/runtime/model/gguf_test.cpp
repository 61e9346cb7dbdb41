#include "runtime/model/gguf.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>

#include "runtime/model/model_config.h"
#include "runtime/model/model_loader.h"
#include "runtime/model/weights.h"
#include "tests/unit/runtime/model_file_writers.h"

using namespace ghostd::runtime;
using ghostd::test::Bytes;
using ghostd::test::GgufWriter;
using ghostd::test::TempDir;

namespace {

Result<GgufFile> open_bytes(const TempDir& dir, const Bytes& bytes) {
  ghostd::test::write_file(dir / "m.gguf", bytes);
  return GgufFile::open(dir / "m.gguf");
}

Bytes floats_bytes(const std::vector<float>& v) { return ghostd::test::to_bytes(v); }

}  // namespace

TEST_CASE("gguf: a vocabulary-only file opens with its metadata") {
  auto f = GgufFile::open(std::filesystem::path(GHOSTD_TEST_DATA) / "tokenizer/ggml-vocab-gpt-2.gguf");
  REQUIRE(f.ok());
  CHECK(f->version() == 3);
  CHECK(f->tensors().empty());
  CHECK(f->alignment() == 32);
  CHECK(f->get_string("general.architecture") == "gpt2");
  CHECK(f->get_int("gpt2.block_count") == 12);
  CHECK(f->get_int("gpt2.context_length") == 1024);
  CHECK(f->get_string("tokenizer.ggml.model") == "gpt2");
  auto tokens = f->get_string_array("tokenizer.ggml.tokens");
  REQUIRE(tokens);
  CHECK(tokens->size() == 50257);
  CHECK((*tokens)[0] == "!");
  CHECK((*tokens)[50256] == "<|endoftext|>");
  auto merges = f->get_string_array("tokenizer.ggml.merges");
  REQUIRE(merges);
  CHECK(merges->size() == 50000);
  CHECK((*merges)[0] == "Ġ t");
  auto types = f->get_int_array("tokenizer.ggml.token_type");
  REQUIRE(types);
  CHECK(types->size() == 50257);
  // Wrong-type reads give nothing rather than a bogus value.
  CHECK_FALSE(f->get_int("general.architecture"));
  CHECK_FALSE(f->get_string("gpt2.block_count"));
  CHECK_FALSE(f->get_int_array("tokenizer.ggml.tokens"));
  CHECK_FALSE(f->get_string("no.such.key"));
  CHECK(f->find("no.such.key") == nullptr);
}

TEST_CASE("gguf: tensors written by the test round-trip (F32, F16, BF16, Q8_0)") {
  for (uint32_t version : {2u, 3u}) {
    for (uint32_t alignment : {32u, 64u}) {
      CAPTURE(version);
      CAPTURE(alignment);
      TempDir dir;
      const std::vector<float> w = {1, 2, 3, 4, 5, 6};
      const std::vector<uint16_t> h = {f32_to_f16(0.25f), f32_to_f16(-8.0f), f32_to_f16(3.0f)};
      const std::vector<uint16_t> bf = {f32_to_bf16(1.5f), f32_to_bf16(-2.0f)};
      std::vector<float> qsrc(64);
      for (int i = 0; i < 64; ++i) qsrc[i] = static_cast<float>(i - 20) * 0.125f;
      Bytes q8(dtype_bytes(DType::kQ8_0, 64));
      quantize_row_q8_0(qsrc.data(), q8.data(), 64);

      GgufWriter g(version);
      if (alignment != 32) g.alignment(alignment);
      g.str("general.architecture", "llama")
          .u32("llama.block_count", 2)
          .f32("llama.rope.freq_base", 500000.0f)
          .u64("big", uint64_t{1} << 40)
          .i32("neg", -5)
          .boolean("flag", true)
          .strings("names", {"a", "", "ccc"})
          .i32s("ids", {7, -1, 9})
          .tensor("w", {3, 2}, 0, floats_bytes(w))
          .tensor("h", {3}, 1, ghostd::test::to_bytes(h))
          .tensor("bf", {1, 2}, 30, ghostd::test::to_bytes(bf))
          .tensor("q", {32, 2}, 8, q8);
      // Narrow integer types, each readable through get_int.
      Bytes raw;
      auto kv = [&](const std::string& k, uint32_t type, auto value) {
        GgufWriter::put_string(raw, k);
        ghostd::test::put<uint32_t>(raw, type);
        ghostd::test::put(raw, value);
      };
      kv("u8", ghostd::test::kGU8, uint8_t{200});
      kv("i8", ghostd::test::kGI8, int8_t{-100});
      kv("u16", ghostd::test::kGU16, uint16_t{60000});
      kv("i16", ghostd::test::kGI16, int16_t{-30000});
      kv("i64", ghostd::test::kGI64, int64_t{-(int64_t{1} << 50)});
      kv("f64", ghostd::test::kGF64, 0.1);
      kv("u64max", ghostd::test::kGU64, ~uint64_t{0});
      g.raw_kv(raw, 7);

      auto f = open_bytes(dir, g.bytes());
      REQUIRE_MESSAGE(f.ok(), f.error().message);
      CHECK(f->version() == version);
      CHECK(f->alignment() == alignment);
      CHECK(f->get_int("llama.block_count") == 2);
      CHECK(f->get_float("llama.rope.freq_base") == 500000.0);
      CHECK(f->get_int("big") == (int64_t{1} << 40));
      CHECK(f->get_int("neg") == -5);
      CHECK(f->find("flag")->as_bool() == true);
      CHECK(f->get_string_array("names") == std::vector<std::string>{"a", "", "ccc"});
      CHECK(f->get_int_array("ids") == std::vector<int64_t>{7, -1, 9});
      CHECK(f->get_int("u8") == 200);
      CHECK(f->get_int("i8") == -100);
      CHECK(f->get_int("u16") == 60000);
      CHECK(f->get_int("i16") == -30000);
      CHECK(f->get_int("i64") == -(int64_t{1} << 50));
      CHECK(f->get_float("f64") == 0.1);
      CHECK_FALSE(f->get_int("u64max"));  // does not fit int64
      CHECK_FALSE(f->get_int("f64"));
      CHECK(f->keys().front() == (alignment != 32 ? "general.alignment" : "general.architecture"));

      REQUIRE(f->tensors().size() == 4);
      const TensorView* tw = f->find_tensor("w");
      REQUIRE(tw);
      CHECK(tw->dtype == DType::kF32);
      CHECK(tw->shape == std::vector<int64_t>{2, 3});  // ne {3, 2} -> PyTorch [2, 3]
      CHECK(reinterpret_cast<uintptr_t>(tw->data) % alignment == 0);
      std::vector<float> back(6);
      dequantize_row(DType::kF32, tw->data, back.data(), 6);
      CHECK(back == w);
      const TensorView* th = f->find_tensor("h");
      REQUIRE(th);
      CHECK(th->dtype == DType::kF16);
      dequantize_row(DType::kF16, th->data, back.data(), 3);
      CHECK(back[1] == -8.0f);
      const TensorView* tb = f->find_tensor("bf");
      REQUIRE(tb);
      CHECK(tb->dtype == DType::kBF16);
      CHECK(tb->shape == std::vector<int64_t>{2, 1});
      dequantize_row(DType::kBF16, tb->data, back.data(), 2);
      CHECK(back[0] == 1.5f);
      const TensorView* tq = f->find_tensor("q");
      REQUIRE(tq);
      CHECK(tq->dtype == DType::kQ8_0);
      CHECK(tq->shape == std::vector<int64_t>{2, 32});
      CHECK(tq->nbytes == 68);
      std::vector<float> qback(64);
      dequantize_row(DType::kQ8_0, tq->data, qback.data(), 64);
      for (int i = 0; i < 64; ++i) CHECK(qback[i] == doctest::Approx(qsrc[i]).epsilon(0.02));
    }
  }
}

TEST_CASE("gguf: malformed files give errors naming the file and what is wrong") {
  const Bytes f32x4 = floats_bytes({1, 2, 3, 4});
  struct Case {
    const char* what;
    Bytes bytes;
    std::vector<std::string> expect;
  };
  auto with = [](auto edit) {
    GgufWriter g;
    edit(g);
    return g.bytes();
  };
  std::vector<Case> cases = {
      {"empty file", {}, {"m.gguf", "bad magic"}},
      {"bad magic", {'G', 'G', 'M', 'L', 3, 0, 0, 0}, {"bad magic"}},
      {"version 1", GgufWriter(1).bytes(), {"version 1 is not supported"}},
      {"version 4", GgufWriter(4).bytes(), {"unsupported GGUF version 4"}},
      {"big-endian", GgufWriter(0x03000000).bytes(), {"big-endian"}},
      {"truncated header", Bytes{'G', 'G', 'U', 'F', 3, 0, 0, 0, 0, 0}, {"truncated header"}},
      {"huge metadata count", with([](GgufWriter& g) { g.claim_counts(0, uint64_t{1} << 62); }),
       {"metadata entries, more than the file holds"}},
      {"huge tensor count", with([](GgufWriter& g) { g.claim_counts(uint64_t{1} << 62, 0); }),
       {"tensors, more than the file holds"}},
      {"huge string length",
       with([](GgufWriter& g) {
         Bytes b;
         GgufWriter::put_string(b, "k");
         ghostd::test::put<uint32_t>(b, ghostd::test::kGString);
         ghostd::test::put<uint64_t>(b, uint64_t{1} << 60);
         g.raw_kv(b);
       }),
       {"truncated string value of metadata 'k'"}},
      {"huge array count",
       with([](GgufWriter& g) {
         Bytes b;
         GgufWriter::put_string(b, "arr");
         ghostd::test::put<uint32_t>(b, ghostd::test::kGArray);
         ghostd::test::put<uint32_t>(b, ghostd::test::kGString);
         ghostd::test::put<uint64_t>(b, uint64_t{1} << 40);
         g.raw_kv(b);
       }),
       {"metadata 'arr'", "1099511627776 elements"}},
      {"unknown value type",
       with([](GgufWriter& g) {
         Bytes b;
         GgufWriter::put_string(b, "odd");
         ghostd::test::put<uint32_t>(b, 13);
         g.raw_kv(b);
       }),
       {"metadata 'odd'", "unknown value type 13"}},
      {"duplicate key", with([](GgufWriter& g) { g.u32("a", 1).u32("a", 2); }), {"'a' appears twice"}},
      {"bad alignment", with([](GgufWriter& g) { g.u32("general.alignment", 3); }), {"general.alignment"}},
      {"unsupported tensor type", with([&](GgufWriter& g) { g.tensor("blk.0.attn_q.weight", {4}, 10, f32x4); }),
       {"m.gguf", "tensor 'blk.0.attn_q.weight'", "ggml type 10 (Q2_K)"}},
      {"unknown tensor type", with([&](GgufWriter& g) { g.tensor("t", {4}, 99, f32x4); }),
       {"tensor 't'", "ggml type 99"}},
      {"tensor beyond the file", with([&](GgufWriter& g) { g.tensor("t", {8}, 0, f32x4); }),
       {"m.gguf", "tensor 't'", "beyond the end of the file"}},
      {"tensor offset beyond the file", with([&](GgufWriter& g) { g.tensor("t", {4}, 0, f32x4, 1 << 20); }),
       {"tensor 't'", "beyond the end"}},
      {"misaligned offset", with([&](GgufWriter& g) { g.tensor("t", {2}, 0, f32x4, 4); }),
       {"tensor 't'", "not a multiple of the alignment"}},
      {"overlapping tensors",
       with([&](GgufWriter& g) { g.tensor("t1", {4}, 0, f32x4).tensor("t2", {4}, 0, {}, 0); }),
       {"'t1' and 't2' overlap"}},
      {"duplicate tensor", with([&](GgufWriter& g) { g.tensor("t", {4}, 0, f32x4).tensor("t", {4}, 0, f32x4); }),
       {"tensor 't' appears twice"}},
      {"too many dims", with([&](GgufWriter& g) { g.tensor("t", {1, 1, 1, 1, 4}, 0, f32x4); }),
       {"tensor 't'", "5 dimensions"}},
      {"impossible shape", with([&](GgufWriter& g) { g.tensor("t", {uint64_t{1} << 40, uint64_t{1} << 40}, 0, f32x4); }),
       {"tensor 't'", "impossible shape"}},
      {"Q8_0 row not whole blocks", with([&](GgufWriter& g) { g.tensor("t", {16, 2}, 8, Bytes(34, 0)); }),
       {"tensor 't'", "multiple of 32"}},
      {"Q4_K row not whole blocks", with([&](GgufWriter& g) { g.tensor("t", {128, 2}, 12, Bytes(144, 0)); }),
       {"tensor 't'", "Q4_K", "multiple of 256"}},
      {"Q4_0 row not whole blocks", with([&](GgufWriter& g) { g.tensor("t", {48}, 2, Bytes(36, 0)); }),
       {"tensor 't'", "Q4_0", "multiple of 32"}},
      {"Q6_K blocks truncated", with([&](GgufWriter& g) { g.tensor("blk.0.ffn_down.weight", {256, 2}, 14, Bytes(210, 0)); }),
       {"m.gguf", "tensor 'blk.0.ffn_down.weight'", "420 bytes", "beyond the end of the file"}},
      {"Q5_1 blocks truncated", with([&](GgufWriter& g) { g.tensor("t", {64}, 7, Bytes(47, 0)); }),
       {"tensor 't'", "48 bytes", "beyond the end of the file"}},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    TempDir dir;
    auto r = open_bytes(dir, c.bytes);
    REQUIRE_FALSE(r.ok());
    for (const auto& s : c.expect) {
      CAPTURE(r.error().message);
      CHECK(r.error().message.find(s) != std::string::npos);
    }
  }
  TempDir dir;
  auto missing = GgufFile::open(dir / "absent.gguf");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message.find("absent.gguf") != std::string::npos);
}

TEST_CASE("gguf: every truncation and random corruption fails cleanly") {
  GgufWriter g;
  g.str("general.architecture", "llama")
      .strings("tokenizer.ggml.tokens", {"a", "b", "c"})
      .i32s("ids", {1, 2, 3})
      .tensor("w", {4}, 0, floats_bytes({1, 2, 3, 4}))
      .tensor("v", {2}, 1, Bytes(4, 0));
  const Bytes good = g.bytes();
  TempDir dir;
  REQUIRE(open_bytes(dir, good).ok());
  for (size_t n = 0; n < good.size(); ++n) {
    CAPTURE(n);
    CHECK_FALSE(open_bytes(dir, Bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n))).ok());
  }
  // Random byte flips may or may not leave a valid file; they must not crash
  // or read out of bounds (run under ASan in the fuzz build).
  std::mt19937 rng(42);
  for (int i = 0; i < 500; ++i) {
    Bytes bad = good;
    for (int k = 0; k < 3; ++k) bad[rng() % bad.size()] = static_cast<uint8_t>(rng());
    auto r = open_bytes(dir, bad);
    if (r.ok()) {
      unsigned sum = 0;  // touch every byte a view claims
      for (const auto& t : r->tensors()) {
        for (size_t k = 0; k < t.nbytes; ++k) sum += static_cast<unsigned>(t.data[k]);
      }
      CHECK(sum < ~0u);
    }
  }
}

TEST_CASE("gguf: ggml block types dequantize bit for bit as ggml's reference") {
  const std::filesystem::path dir = std::filesystem::path(GHOSTD_TEST_DATA) / "quant";
  auto f = GgufFile::open(dir / "tiny-qwen2-mixed.gguf");
  REQUIRE_MESSAGE(f.ok(), (f.ok() ? "" : f.error().message));
  struct Case {
    const char* tensor;
    DType dtype;
    int64_t rows;  // rows to compare (token_embd's reference holds the first 64)
  };
  const Case cases[] = {
      {"blk.0.attn_q.weight", DType::kQ4_0, 256},   {"blk.0.attn_k.weight", DType::kQ4_1, 128},
      {"blk.0.attn_v.weight", DType::kQ5_0, 128},   {"blk.0.attn_output.weight", DType::kQ5_1, 256},
      {"blk.0.ffn_gate.weight", DType::kQ4_K, 768}, {"blk.0.ffn_up.weight", DType::kQ5_K, 768},
      {"blk.0.ffn_down.weight", DType::kQ6_K, 256}, {"token_embd.weight", DType::kQ4_K, 64},
  };
  for (const auto& c : cases) {
    CAPTURE(c.tensor);
    const TensorView* t = f->find_tensor(c.tensor);
    REQUIRE(t != nullptr);
    CHECK(t->dtype == c.dtype);
    REQUIRE(t->shape.size() == 2);
    const int64_t cols = t->shape[1];
    std::string ref_name = c.tensor;
    ref_name = ref_name.substr(0, ref_name.size() - std::string(".weight").size()) + ".f32";
    std::ifstream in(dir / ref_name, std::ios::binary);
    REQUIRE(in);
    std::vector<float> want(static_cast<size_t>(c.rows * cols));
    in.read(reinterpret_cast<char*>(want.data()), static_cast<std::streamsize>(want.size() * 4));
    REQUIRE(in.gcount() == static_cast<std::streamsize>(want.size() * 4));
    std::vector<float> got(want.size());
    dequantize_row(t->dtype, t->data, got.data(), c.rows * cols);
    size_t mismatches = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      if (std::memcmp(&got[i], &want[i], 4) != 0) ++mismatches;
    }
    CHECK(mismatches == 0);
    // Row by row from the row's own address gives the same bits (how kernels see it).
    std::vector<float> row(static_cast<size_t>(cols));
    const auto* base = reinterpret_cast<const unsigned char*>(t->data);
    const size_t row_bytes = dtype_bytes(t->dtype, cols);
    dequantize_row(t->dtype, base + row_bytes * static_cast<size_t>(c.rows - 1), row.data(), cols);
    CHECK(std::memcmp(row.data(), want.data() + (c.rows - 1) * cols, row.size() * 4) == 0);
  }
}

// tests/fuzz/make_gguf_seeds.py writes these; a seed the loaders reject would
// leave the fuzzer mutating from an early error instead of a real file's paths.
TEST_CASE("gguf: the fuzz_gguf seeds are files the loaders accept") {
  const auto dir = std::filesystem::path(GHOSTD_TEST_DATA) / ".." / "fuzz" / "corpus" / "gguf";
  struct Seed {
    const char* file;
    const char* arch;
    std::vector<DType> types;  // block types it must hold
  };
  const std::vector<Seed> seeds = {
      {"seed_starcoder2.gguf", "starcoder2", {DType::kQ4_0}},
      {"seed_gemma.gguf", "gemma", {DType::kQ5_0}},
      {"seed_q4_k_m.gguf", "llama", {DType::kQ4_K, DType::kQ5_K, DType::kQ6_K}},
      {"seed_q4_0_q5.gguf", "llama", {DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1}},
  };
  for (const auto& seed : seeds) {
    CAPTURE(seed.file);
    const auto path = dir / seed.file;
    CHECK(std::filesystem::file_size(path) <= 4096);  // ctest's -max_len for the fuzzer
    auto g = GgufFile::open(path);
    REQUIRE_MESSAGE(g.ok(), (g.ok() ? "" : g.error().message));
    CHECK(g->get_string("general.architecture") == seed.arch);
    auto c = config_from_gguf(*g);
    REQUIRE_MESSAGE(c.ok(), (c.ok() ? "" : c.error().message));
    auto ws = WeightStore::open(path);
    REQUIRE_MESSAGE(ws.ok(), (ws.ok() ? "" : ws.error().message));
    for (DType t : seed.types) {
      CHECK(std::any_of(g->tensors().begin(), g->tensors().end(), [&](const TensorView& v) { return v.dtype == t; }));
    }
    for (const TensorView& t : g->tensors()) {
      CAPTURE(t.name);
      const int64_t cols = t.shape.back();
      REQUIRE(dtype_count_ok(t.dtype, cols));
      std::vector<float> row(static_cast<size_t>(cols));
      dequantize_row(t.dtype, t.data, row.data(), cols);
      CHECK(std::all_of(row.begin(), row.end(), [](float v) { return std::isfinite(v); }));
    }
  }
  auto sc2 = config_from_gguf(*GgufFile::open(dir / "seed_starcoder2.gguf"));
  CHECK(sc2->norm == NormType::kLayer);
  CHECK(sc2->attention_bias);
  CHECK(sc2->sliding_window == 32);
  auto gemma = config_from_gguf(*GgufFile::open(dir / "seed_gemma.gguf"));
  CHECK(gemma->mlp == MlpType::kGeGlu);
  auto tok = load_tokenizer(dir / "seed_gemma.gguf");
  REQUIRE_MESSAGE(tok.ok(), (tok.ok() ? "" : tok.error().message));
  CHECK((*tok)->is_sentencepiece());
  CHECK((*tok)->add_bos_default());
  CHECK((*tok)->bos_id() == 2);
}
