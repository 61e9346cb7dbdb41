#include "runtime/model/weights.h"

#include <doctest/doctest.h>

#include <cstring>

#include "tests/unit/runtime/model_file_writers.h"

using namespace ghostd::runtime;
using ghostd::test::Bytes;
using ghostd::test::GgufWriter;
using ghostd::test::SafetensorsWriter;
using ghostd::test::TempDir;
using ghostd::test::write_text;

namespace {

Bytes f32_bytes(int64_t n, float start) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = start + static_cast<float>(i);
  return ghostd::test::to_bytes(v);
}

float f32_at(const TensorView& t, int64_t i) {
  float f;
  std::memcpy(&f, t.data + i * 4, 4);
  return f;
}

void check_error(const Result<WeightStore>& r, const std::vector<std::string>& expect) {
  REQUIRE_FALSE(r.ok());
  for (const auto& s : expect) {
    CAPTURE(r.error().message);
    CHECK(r.error().message.find(s) != std::string::npos);
  }
}

// llama.cpp's convert_hf_to_gguf permute for attn_q/attn_k:
//   w.reshape(n_head, 2, d/2, cols).swapaxes(1, 2).reshape(w.shape)
// so GGUF row h*d + 2i + j is HF row h*d + j*d/2 + i.
Bytes llama_cpp_permute(const Bytes& hf, int64_t rows, int64_t n_head) {
  const size_t row_bytes = hf.size() / static_cast<size_t>(rows);
  const int64_t d = rows / n_head;
  Bytes out(hf.size());
  for (int64_t h = 0; h < n_head; ++h) {
    for (int64_t i = 0; i < d / 2; ++i) {
      for (int64_t j = 0; j < 2; ++j) {
        std::memcpy(&out[static_cast<size_t>(h * d + 2 * i + j) * row_bytes],
                    &hf[static_cast<size_t>(h * d + j * (d / 2) + i) * row_bytes], row_bytes);
      }
    }
  }
  return out;
}

bool same_bytes(const TensorView* t, const Bytes& b) {
  return t != nullptr && t->nbytes == b.size() && std::memcmp(t->data, b.data(), b.size()) == 0;
}

}  // namespace

TEST_CASE("weights: a single model.safetensors directory") {
  TempDir dir;
  SafetensorsWriter()
      .add("model.embed_tokens.weight", "F32", {10, 4}, f32_bytes(40, 0))
      .add("model.norm.weight", "BF16", {4}, Bytes(8, 0))
      .add("lm_head.weight", "F16", {10, 4}, Bytes(80, 0))
      .write(dir / "model.safetensors");
  auto ws = WeightStore::open(dir.path());
  REQUIRE_MESSAGE(ws.ok(), ws.error().message);
  CHECK_FALSE(ws->is_gguf());
  CHECK(ws->gguf() == nullptr);
  CHECK(ws->names() == std::vector<std::string>{"lm_head.weight", "model.embed_tokens.weight", "model.norm.weight"});
  const TensorView* e = ws->find("model.embed_tokens.weight");
  REQUIRE(e);
  CHECK(f32_at(*e, 39) == 39.0f);
  CHECK(ws->find("model.layers.0.mlp.up_proj.weight") == nullptr);

  auto ok = ws->require("model.norm.weight", {4});
  REQUIRE(ok.ok());
  CHECK((*ok)->dtype == DType::kBF16);
  auto wrong = ws->require("lm_head.weight", {4, 10});
  REQUIRE_FALSE(wrong.ok());
  CHECK(wrong.error().message.find("model.safetensors: tensor 'lm_head.weight' has shape [10, 4], expected [4, 10]") !=
        std::string::npos);
  auto missing = ws->require("model.layers.0.self_attn.q_proj.weight", {4, 4});
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message.find("'model.layers.0.self_attn.q_proj.weight' not found") != std::string::npos);

  // Views survive moving the store.
  WeightStore moved = std::move(ws).value();
  CHECK(moved.find("model.embed_tokens.weight") == e);
  CHECK(f32_at(*e, 1) == 1.0f);

  // A .safetensors path works too.
  auto file = WeightStore::open(dir / "model.safetensors");
  REQUIRE(file.ok());
  CHECK(file->names().size() == 3);
}

TEST_CASE("weights: misaligned safetensors data is copied to an aligned buffer") {
  TempDir dir;
  // A 3-byte header pad leaves the data at an odd offset.
  const std::string header =
      R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}})" + std::string(3, ' ');
  REQUIRE((8 + header.size()) % 4 != 0);
  ghostd::test::write_file(dir / "model.safetensors", ghostd::test::safetensors_raw(header, f32_bytes(3, 7)));
  auto ws = WeightStore::open(dir.path());
  REQUIRE_MESSAGE(ws.ok(), ws.error().message);
  const TensorView* w = ws->find("w");
  REQUIRE(w);
  CHECK(reinterpret_cast<uintptr_t>(w->data) % 4 == 0);
  CHECK(f32_at(*w, 2) == 9.0f);
}

TEST_CASE("weights: a sharded index") {
  TempDir dir;
  SafetensorsWriter()
      .add("model.embed_tokens.weight", "F32", {4, 2}, f32_bytes(8, 0))
      .add("model.layers.0.input_layernorm.weight", "F32", {2}, f32_bytes(2, 100))
      .write(dir / "model-00001-of-00002.safetensors");
  SafetensorsWriter()
      .add("model.norm.weight", "F32", {2}, f32_bytes(2, 200))
      .write(dir / "model-00002-of-00002.safetensors");
  const std::string index = R"({"metadata": {"total_size": 48}, "weight_map": {
      "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
      "model.layers.0.input_layernorm.weight": "model-00001-of-00002.safetensors",
      "model.norm.weight": "model-00002-of-00002.safetensors"}})";
  write_text(dir / "model.safetensors.index.json", index);
  auto ws = WeightStore::open(dir.path());
  REQUIRE_MESSAGE(ws.ok(), ws.error().message);
  CHECK(ws->names().size() == 3);
  CHECK(f32_at(*ws->find("model.norm.weight"), 1) == 201.0f);
  CHECK(f32_at(*ws->find("model.layers.0.input_layernorm.weight"), 0) == 100.0f);
  auto bad = ws->require("model.norm.weight", {3});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.find("model-00002-of-00002.safetensors: tensor 'model.norm.weight'") != std::string::npos);

  SUBCASE("tensor listed twice in the index") {
    write_text(dir / "model.safetensors.index.json",
               R"({"weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors",
                                  "model.norm.weight": "model-00001-of-00002.safetensors"}})");
    check_error(WeightStore::open(dir.path()), {"model.safetensors.index.json", "'model.norm.weight' appears twice"});
  }
  SUBCASE("missing shard file") {
    write_text(dir / "model.safetensors.index.json",
               R"({"weight_map": {"model.norm.weight": "model-00003-of-00003.safetensors"}})");
    check_error(WeightStore::open(dir.path()), {"shard 'model-00003-of-00003.safetensors' is missing"});
  }
  SUBCASE("tensor in the index missing from its shard") {
    write_text(dir / "model.safetensors.index.json",
               R"({"weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors",
                                  "lm_head.weight": "model-00002-of-00002.safetensors"}})");
    check_error(WeightStore::open(dir.path()),
                {"tensor 'lm_head.weight' is missing from its shard", "model-00002-of-00002.safetensors"});
  }
  SUBCASE("tensor found in a shard the index does not name for it") {
    write_text(dir / "model.safetensors.index.json",
               R"({"weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors",
                                  "model.embed_tokens.weight": "model-00002-of-00002.safetensors"}})");
    check_error(WeightStore::open(dir.path()), {"tensor 'model.", "maps it to"});
  }
  SUBCASE("the same tensor in two shards") {
    SafetensorsWriter()
        .add("model.norm.weight", "F32", {2}, f32_bytes(2, 0))
        .write(dir / "model-00001-of-00002.safetensors");
    write_text(dir / "model.safetensors.index.json",
               R"({"weight_map": {"model.embed_tokens.weight": "model-00002-of-00002.safetensors",
                                  "x": "model-00001-of-00002.safetensors"}})");
    check_error(WeightStore::open(dir.path()), {"tensor 'model.norm.weight' appears twice"});
  }
  SUBCASE("shard path escaping the directory") {
    write_text(dir / "model.safetensors.index.json", R"({"weight_map": {"w": "../evil.safetensors"}})");
    check_error(WeightStore::open(dir.path()), {"invalid shard '../evil.safetensors'"});
  }
  SUBCASE("index without weight_map") {
    write_text(dir / "model.safetensors.index.json", R"({"metadata": {}})");
    check_error(WeightStore::open(dir.path()), {"model.safetensors.index.json", "'weight_map'"});
  }
  SUBCASE("corrupt shard") {
    ghostd::test::write_file(dir / "model-00002-of-00002.safetensors", {1, 2, 3});
    check_error(WeightStore::open(dir.path()), {"model-00002-of-00002.safetensors", "truncated"});
  }
}

TEST_CASE("weights: missing and unusable paths") {
  TempDir dir;
  check_error(WeightStore::open(dir / "absent"), {"absent", "no such file"});
  check_error(WeightStore::open(dir.path()), {"no model.safetensors or model.safetensors.index.json"});
  write_text(dir / "notes.txt", "hello");
  check_error(WeightStore::open(dir / "notes.txt"), {"notes.txt", "not a model directory"});
  ghostd::test::write_file(dir / "model.safetensors", ghostd::test::safetensors_raw("{\"w\": 1}", {}));
  check_error(WeightStore::open(dir.path()), {"model.safetensors", "tensor 'w'"});
  ghostd::test::write_file(dir / "bad.gguf", {'G', 'G', 'U', 'F', 3, 0, 0, 0});
  check_error(WeightStore::open(dir / "bad.gguf"), {"bad.gguf", "truncated header"});
}

TEST_CASE("weights: GGUF names map to Hugging Face names") {
  struct Case {
    const char* gguf;
    const char* hf;
  };
  const Case cases[] = {
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"},
      {"blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight"},
      {"blk.12.attn_k.bias", "model.layers.12.self_attn.k_proj.bias"},
      {"blk.3.attn_v.weight", "model.layers.3.self_attn.v_proj.weight"},
      {"blk.3.attn_output.weight", "model.layers.3.self_attn.o_proj.weight"},
      {"blk.3.ffn_gate.weight", "model.layers.3.mlp.gate_proj.weight"},
      {"blk.3.ffn_up.weight", "model.layers.3.mlp.up_proj.weight"},
      {"blk.3.ffn_down.weight", "model.layers.3.mlp.down_proj.weight"},
      {"blk.3.attn_norm.weight", "model.layers.3.input_layernorm.weight"},
      {"blk.3.ffn_norm.weight", "model.layers.3.post_attention_layernorm.weight"},
      {"rope_freqs.weight", "rope_freqs.weight"},
      {"blk.x.attn_q.weight", "blk.x.attn_q.weight"},
      {"blk.1.unknown.weight", "blk.1.unknown.weight"},
      {"noext", "noext"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.gguf);
    CHECK(hf_name_from_gguf(c.gguf) == c.hf);
  }
}

TEST_CASE("weights: llama GGUF Q/K rows are un-permuted to HF order") {
  // 4 query heads and 2 kv heads of size 4, 32 columns (one Q8_0 block per row).
  constexpr int64_t kHeads = 4, kKvHeads = 2, kHeadDim = 4, kCols = 32;
  const Bytes q_hf = f32_bytes(kHeads * kHeadDim * kCols, 0);
  const Bytes k_hf = f32_bytes(kKvHeads * kHeadDim * kCols, 1000);
  const Bytes v_hf = f32_bytes(kKvHeads * kHeadDim * kCols, 2000);
  const Bytes qb_hf = f32_bytes(kHeads * kHeadDim, 3000);
  // Q8_0 copy of the K weight: the permutation moves whole quantized rows.
  std::vector<float> k_src(static_cast<size_t>(kKvHeads * kHeadDim * kCols));
  std::memcpy(k_src.data(), k_hf.data(), k_hf.size());
  Bytes kq_hf(dtype_bytes(DType::kQ8_0, static_cast<int64_t>(k_src.size())));
  quantize_row_q8_0(k_src.data(), kq_hf.data(), static_cast<int64_t>(k_src.size()));

  auto build = [&](const std::string& arch, bool permute) {
    auto perm = [&](const Bytes& b, int64_t rows, int64_t heads) { return permute ? llama_cpp_permute(b, rows, heads) : b; };
    GgufWriter g;
    g.str("general.architecture", arch)
        .u32(arch + ".attention.head_count", kHeads)
        .u32(arch + ".attention.head_count_kv", kKvHeads)
        .tensor("token_embd.weight", {kCols, 3}, 0, f32_bytes(3 * kCols, 0))
        .tensor("blk.0.attn_q.weight", {kCols, kHeads * kHeadDim}, 0, perm(q_hf, kHeads * kHeadDim, kHeads))
        .tensor("blk.0.attn_q.bias", {kHeads * kHeadDim}, 0, perm(qb_hf, kHeads * kHeadDim, kHeads))
        .tensor("blk.0.attn_k.weight", {kCols, kKvHeads * kHeadDim}, 0, perm(k_hf, kKvHeads * kHeadDim, kKvHeads))
        .tensor("blk.0.attn_v.weight", {kCols, kKvHeads * kHeadDim}, 0, v_hf)
        .tensor("blk.1.attn_k.weight", {kCols, kKvHeads * kHeadDim}, 8, perm(kq_hf, kKvHeads * kHeadDim, kKvHeads))
        .tensor("output_norm.weight", {kCols}, 0, f32_bytes(kCols, 0));
    return g;
  };

  for (const std::string arch : {"llama", "qwen2"}) {
    CAPTURE(arch);
    TempDir dir;
    build(arch, arch == "llama").write(dir / "model.gguf");
    auto ws = WeightStore::open(dir / "model.gguf");
    REQUIRE_MESSAGE(ws.ok(), ws.error().message);
    CHECK(ws->is_gguf());
    REQUIRE(ws->gguf() != nullptr);
    CHECK(ws->gguf()->tensors().size() == 7);
    CHECK(ws->find("blk.0.attn_q.weight") == nullptr);  // only HF names
    CHECK(ws->find("model.norm.weight") != nullptr);
    auto q = ws->require("model.layers.0.self_attn.q_proj.weight", {kHeads * kHeadDim, kCols});
    REQUIRE_MESSAGE(q.ok(), q.error().message);
    CHECK(same_bytes(*q, q_hf));
    CHECK(same_bytes(ws->find("model.layers.0.self_attn.q_proj.bias"), qb_hf));
    CHECK(same_bytes(ws->find("model.layers.0.self_attn.k_proj.weight"), k_hf));
    CHECK(same_bytes(ws->find("model.layers.0.self_attn.v_proj.weight"), v_hf));
    const TensorView* kq = ws->find("model.layers.1.self_attn.k_proj.weight");
    REQUIRE(kq);
    CHECK(kq->dtype == DType::kQ8_0);
    CHECK(same_bytes(kq, kq_hf));
    // Spot-check one row with the formula directly: HF row h*d + j*d/2 + i of
    // Q is GGUF row h*d + 2i + j; row 5 = head 1, j 0, i 1 -> GGUF row 6.
    const TensorView* gq = ws->gguf()->find_tensor("blk.0.attn_q.weight");
    REQUIRE(gq);
    const float* hf_row5 = reinterpret_cast<const float*>((*q)->data) + 5 * kCols;
    const float* gguf_row = reinterpret_cast<const float*>(gq->data) + (arch == "llama" ? 6 : 5) * kCols;
    CHECK(std::memcmp(hf_row5, gguf_row, kCols * 4) == 0);
    CHECK(hf_row5[0] == 5.0f * kCols);
  }

  // Rows that are not heads of an even size cannot be un-permuted.
  TempDir dir;
  GgufWriter bad;
  bad.str("general.architecture", "llama")
      .u32("llama.attention.head_count", 3)
      .tensor("blk.0.attn_q.weight", {kCols, 4}, 0, f32_bytes(4 * kCols, 0));
  bad.write(dir / "bad.gguf");
  check_error(WeightStore::open(dir / "bad.gguf"), {"bad.gguf", "tensor 'blk.0.attn_q.weight'", "3 heads"});
}

TEST_CASE("weights: starcoder2 GGUF ffn_up / ffn_down are HF's c_fc / c_proj, biases too; rows stay in place") {
  constexpr int64_t kCols = 32, kRows = 8;
  const Bytes q = f32_bytes(kRows * kCols, 0);
  GgufWriter g;
  g.str("general.architecture", "starcoder2")
      .u32("starcoder2.attention.head_count", 2)
      .tensor("blk.0.attn_q.weight", {kCols, kRows}, 0, q)
      .tensor("blk.0.ffn_up.weight", {kCols, kRows}, 0, f32_bytes(kRows * kCols, 1))
      .tensor("blk.0.ffn_up.bias", {kRows}, 0, f32_bytes(kRows, 2))
      .tensor("blk.0.ffn_down.weight", {kRows, kCols}, 0, f32_bytes(kRows * kCols, 3))
      .tensor("blk.0.ffn_down.bias", {kCols}, 0, f32_bytes(kCols, 4))
      .tensor("blk.0.attn_norm.bias", {kCols}, 0, f32_bytes(kCols, 5));
  TempDir dir;
  g.write(dir / "model.gguf");
  auto ws = WeightStore::open(dir / "model.gguf");
  REQUIRE_MESSAGE(ws.ok(), ws.error().message);
  for (const char* name : {"model.layers.0.mlp.c_fc.weight", "model.layers.0.mlp.c_fc.bias",
                           "model.layers.0.mlp.c_proj.weight", "model.layers.0.mlp.c_proj.bias",
                           "model.layers.0.input_layernorm.bias"}) {
    CAPTURE(name);
    CHECK(ws->find(name) != nullptr);
  }
  CHECK(ws->find("model.layers.0.mlp.up_proj.weight") == nullptr);
  // No llama-style permutation: starcoder2 ropes with rotate_half in llama.cpp too.
  const TensorView* tq = ws->find("model.layers.0.self_attn.q_proj.weight");
  REQUIRE(tq != nullptr);
  CHECK(std::memcmp(tq->data, q.data(), q.size()) == 0);
}
