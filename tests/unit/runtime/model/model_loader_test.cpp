// load_model end to end on a GGUF that llama.cpp's llama-quantize wrote, with
// one ggml block type per kind of tensor (tests/data/quant/README.md).
#include "runtime/model/model_loader.h"

#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <vector>

#include "runtime/model/gguf.h"

using namespace ghostd::runtime;

namespace {

const std::filesystem::path kMixed = std::filesystem::path(GHOSTD_TEST_DATA) / "quant" / "tiny-qwen2-mixed.gguf";

// One forward call over all sequences (each in its own KV blocks), a logits
// row per token.
std::vector<float> forward_all(Model& m, const ModelConfig& c, const std::vector<std::vector<int32_t>>& seqs) {
  constexpr int kBlock = 16;
  size_t longest = 0;
  for (const auto& s : seqs) longest = std::max(longest, s.size());
  const int per_seq = static_cast<int>(longest / kBlock) + 1;
  auto kv = KvStorage::create(m.backend(), c, per_seq * static_cast<int>(seqs.size()), kBlock);
  REQUIRE_MESSAGE(kv.ok(), (kv.ok() ? "" : kv.error().message));
  std::vector<std::vector<int32_t>> tables(seqs.size());
  std::vector<SequenceInput> in;
  for (size_t i = 0; i < seqs.size(); ++i) {
    for (int b = 0; b < per_seq; ++b) tables[i].push_back(static_cast<int32_t>(i) * per_seq + b);
    in.push_back({seqs[i], 0, tables[i], true});
  }
  std::vector<float> logits;
  REQUIRE(m.reserve(Model::capacity_for(in)).ok());
  const Status st = m.forward(in, *kv, logits);
  REQUIRE_MESSAGE(st.ok(), st.message());
  return logits;
}

}  // namespace

TEST_CASE("load_model: a GGUF with every ggml block type loads in place and batches invariantly") {
  auto backend = make_cpu_backend({.threads = 2});
  auto loaded = load_model(kMixed, *backend, /*need_tokenizer=*/true);
  REQUIRE_MESSAGE(loaded.ok(), (loaded.ok() ? "" : loaded.error().message));
  CHECK(loaded->config.hidden_size == 256);
  CHECK(loaded->config.num_layers == 2);
  REQUIRE(loaded->tokenizer != nullptr);
  CHECK(loaded->tokenizer->vocab_size() == 49152);

  // Block tensors are used where the file maps them: nothing is dequantized.
  const GgufFile* gguf = loaded->weights->gguf();
  REQUIRE(gguf != nullptr);
  const std::pair<const char*, DType> blocks[] = {
      {"self_attn.q_proj", DType::kQ4_0}, {"self_attn.k_proj", DType::kQ4_1}, {"self_attn.v_proj", DType::kQ5_0},
      {"self_attn.o_proj", DType::kQ5_1}, {"mlp.gate_proj", DType::kQ4_K},   {"mlp.up_proj", DType::kQ5_K},
      {"mlp.down_proj", DType::kQ6_K}};
  const char* gguf_names[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
  for (size_t i = 0; i < std::size(blocks); ++i) {
    CAPTURE(blocks[i].first);
    const TensorView* t = loaded->weights->find(std::string("model.layers.1.") + blocks[i].first + ".weight");
    const TensorView* raw = gguf->find_tensor(std::string("blk.1.") + gguf_names[i] + ".weight");
    REQUIRE(t != nullptr);
    REQUIRE(raw != nullptr);
    CHECK(t->dtype == blocks[i].second);
    CHECK(t->data == raw->data);
  }

  // A sequence's logits are the same bits alone and next to another one.
  std::vector<int32_t> a, b;
  for (int i = 0; i < 21; ++i) a.push_back(100 + (i * 7919) % 40000);
  for (int i = 0; i < 37; ++i) b.push_back(300 + (i * 104729) % 40000);
  Model& model = *loaded->model;
  const auto alone = forward_all(model, loaded->config, {a});
  const auto both = forward_all(model, loaded->config, {b, a});
  const size_t vocab = static_cast<size_t>(loaded->config.vocab_size);
  REQUIRE(alone.size() == a.size() * vocab);
  REQUIRE(both.size() == (a.size() + b.size()) * vocab);
  CHECK(std::memcmp(alone.data(), both.data() + b.size() * vocab, alone.size() * sizeof(float)) == 0);
  // The logits depend on the tokens (else the comparison would prove little).
  CHECK(std::memcmp(alone.data(), both.data(), vocab * sizeof(float)) != 0);
}

TEST_CASE("load_model: weights copied into huge pages give the bits of weights read in place") {
  std::vector<int32_t> a;
  for (int i = 0; i < 19; ++i) a.push_back(50 + (i * 7919) % 40000);
  std::vector<float> logits[2];
  const CpuWeightMemory modes[] = {CpuWeightMemory::kMapped, CpuWeightMemory::kHugePages};
  for (int m = 0; m < 2; ++m) {
    auto backend = make_cpu_backend({.threads = 2, .weights = modes[m]});
    auto loaded = load_model(kMixed, *backend, /*need_tokenizer=*/false);
    REQUIRE_MESSAGE(loaded.ok(), (loaded.ok() ? "" : loaded.error().message));
    // Weights read in place are read in at load (MappedFile::settle); copied ones need not be.
    if (modes[m] == CpuWeightMemory::kMapped) {
      REQUIRE(loaded->page_cache.size() == 1);
      CHECK(loaded->page_cache[0].first == kMixed);
      CHECK(loaded->page_cache[0].second.bytes == std::filesystem::file_size(kMixed));
    } else {
      CHECK(loaded->page_cache.empty());
    }
    logits[m] = forward_all(*loaded->model, loaded->config, {a});
  }
  REQUIRE(logits[0].size() == logits[1].size());
  CHECK(std::memcmp(logits[0].data(), logits[1].data(), logits[0].size() * sizeof(float)) == 0);
}
