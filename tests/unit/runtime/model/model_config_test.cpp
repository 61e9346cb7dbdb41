#include "runtime/model/model_config.h"

#include <cmath>
#include <doctest/doctest.h>

#include "runtime/model/gguf.h"
#include "tests/unit/runtime/model_file_writers.h"

using namespace ghostd::runtime;
using ghostd::test::GgufWriter;
using ghostd::test::TempDir;
using ghostd::test::write_text;

namespace {

// Shapes from Qwen2.5-Coder-0.5B's config.json.
const char* kQwenConfig = R"({
  "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
  "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
  "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
  "max_position_embeddings": 32768, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
  "rope_scaling": null, "tie_word_embeddings": true,
  "bos_token_id": 151643, "eos_token_id": 151643, "torch_dtype": "bfloat16"
})";

// Llama-3.2-1B style, with llama3 rope scaling.
const char* kLlamaConfig = R"({
  "architectures": ["LlamaForCausalLM"], "hidden_size": 2048, "intermediate_size": 8192,
  "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
  "vocab_size": 128256, "max_position_embeddings": 131072, "rms_norm_eps": 1e-05,
  "rope_theta": 500000.0, "tie_word_embeddings": true, "attention_bias": false,
  "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "bos_token_id": 128000, "eos_token_id": 128001
})";

Result<ModelConfig> parse_text(const TempDir& dir, const std::string& config, const std::string& generation = "") {
  write_text(dir / "config.json", config);
  if (!generation.empty()) write_text(dir / "generation_config.json", generation);
  return parse_hf_config(dir.path());
}

// Replaces `from` by `to` once in `s`.
std::string edit(std::string s, const std::string& from, const std::string& to) {
  const size_t at = s.find(from);
  REQUIRE(at != std::string::npos);
  return s.replace(at, from.size(), to);
}

void check_close(const std::vector<float>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i] == doctest::Approx(want[i]).epsilon(2e-6));
  }
}

}  // namespace

TEST_CASE("hf config: Qwen2.5-Coder shape") {
  TempDir dir;
  auto c = parse_text(dir, kQwenConfig, R"({"bos_token_id": 151643, "eos_token_id": [151645, 151643]})");
  REQUIRE_MESSAGE(c.ok(), c.error().message);
  CHECK(c->architecture == "qwen2");
  CHECK(c->hidden_size == 896);
  CHECK(c->num_layers == 24);
  CHECK(c->num_heads == 14);
  CHECK(c->num_kv_heads == 2);
  CHECK(c->head_dim == 64);
  CHECK(c->intermediate_size == 4864);
  CHECK(c->vocab_size == 151936);
  CHECK(c->max_position_embeddings == 32768);
  CHECK(c->rms_norm_eps == 1e-6f);
  CHECK(c->rope_theta == 1e6f);
  CHECK(c->rope_scaling.type == RopeScaling::Type::kNone);
  CHECK(c->tie_word_embeddings);
  CHECK(c->attention_bias);
  CHECK(c->bos_token_id == 151643);
  CHECK(c->eos_token_ids == std::vector<int32_t>{151645, 151643});  // generation_config wins
}

TEST_CASE("hf config: Llama 3 with llama3 rope scaling, ids from config.json") {
  TempDir dir;
  auto c = parse_text(dir, kLlamaConfig);
  REQUIRE_MESSAGE(c.ok(), c.error().message);
  CHECK(c->architecture == "llama");
  CHECK(c->head_dim == 64);
  CHECK_FALSE(c->attention_bias);
  CHECK(c->rope_scaling.type == RopeScaling::Type::kLlama3);
  CHECK(c->rope_scaling.factor == 32.0f);
  CHECK(c->rope_scaling.low_freq_factor == 1.0f);
  CHECK(c->rope_scaling.high_freq_factor == 4.0f);
  CHECK(c->rope_scaling.original_max_position_embeddings == 8192);
  CHECK(c->bos_token_id == 128000);
  CHECK(c->eos_token_ids == std::vector<int32_t>{128001});
}

TEST_CASE("hf config: defaults and alternative spellings") {
  TempDir dir;
  // No num_key_value_heads, head_dim, rope_theta, tie_word_embeddings or
  // max_position_embeddings: transformers' defaults apply.
  auto c = parse_text(dir, R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
      "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100,
      "head_dim": null, "rope_scaling": {"type": "linear", "factor": 2.0}, "eos_token_id": 2})");
  REQUIRE_MESSAGE(c.ok(), c.error().message);
  CHECK(c->num_kv_heads == 4);
  CHECK(c->head_dim == 16);
  CHECK(c->rope_theta == 10000.0f);
  CHECK(c->rms_norm_eps == 1e-6f);
  CHECK(c->max_position_embeddings == 2048);
  CHECK_FALSE(c->tie_word_embeddings);
  CHECK(c->bos_token_id == -1);
  CHECK(c->eos_token_ids == std::vector<int32_t>{2});
  CHECK(c->rope_scaling.type == RopeScaling::Type::kLinear);
  CHECK(c->rope_scaling.factor == 2.0f);

  // transformers >= 5: rope_parameters carries theta and type.
  TempDir dir2;
  auto d = parse_text(dir2, edit(kQwenConfig, R"("rope_theta": 1000000.0,)",
                                 R"("rope_parameters": {"rope_theta": 5000.0, "rope_type": "default"},)"));
  REQUIRE_MESSAGE(d.ok(), d.error().message);
  CHECK(d->rope_theta == 5000.0f);
  CHECK(d->rope_scaling.type == RopeScaling::Type::kNone);
  CHECK(d->max_position_embeddings == 32768);
}

TEST_CASE("hf config: errors name config.json and the field") {
  struct Case {
    const char* what;
    std::string config;
    std::vector<std::string> expect;
  };
  const std::vector<Case> cases = {
      {"not JSON", "{", {"config.json", "not valid JSON"}},
      {"unknown architecture", edit(kQwenConfig, "Qwen2ForCausalLM", "MistralForCausalLM"),
       {"config.json", "MistralForCausalLM", "not supported", "LlamaForCausalLM, Qwen2ForCausalLM"}},
      {"no architecture", edit(kQwenConfig, R"("architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",)", ""),
       {"config.json", "'architectures'"}},
      {"missing hidden_size", edit(kQwenConfig, R"("hidden_size": 896,)", ""), {"config.json", "'hidden_size'"}},
      {"zero layers", edit(kQwenConfig, R"("num_hidden_layers": 24)", R"("num_hidden_layers": 0)"),
       {"'num_hidden_layers' is 0", "positive integer"}},
      {"negative vocab", edit(kQwenConfig, "151936", "-3"), {"'vocab_size' is -3"}},
      {"string heads", edit(kQwenConfig, R"("num_attention_heads": 14)", R"("num_attention_heads": "14")"),
       {"'num_attention_heads'"}},
      {"kv heads not dividing", edit(kQwenConfig, R"("num_key_value_heads": 2)", R"("num_key_value_heads": 3)"),
       {"num_key_value_heads (3)"}},
      {"negative eps", edit(kQwenConfig, "1e-06", "-1"), {"'rms_norm_eps'"}},
      {"unsupported rope", edit(kQwenConfig, R"("rope_scaling": null)", R"("rope_scaling": {"type": "yarn", "factor": 4})"),
       {"config.json", "rope_scaling type 'yarn' is not supported"}},
      {"llama3 missing field",
       edit(kLlamaConfig, R"("low_freq_factor": 1.0,)", ""), {"'low_freq_factor'"}},
      {"bad eos", edit(kQwenConfig, R"("eos_token_id": 151643)", R"("eos_token_id": "x")"), {"'eos_token_id'"}},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    TempDir dir;
    auto r = parse_text(dir, c.config);
    REQUIRE_FALSE(r.ok());
    for (const auto& s : c.expect) {
      CAPTURE(r.error().message);
      CHECK(r.error().message.find(s) != std::string::npos);
    }
  }
  TempDir empty;
  auto missing = parse_hf_config(empty.path());
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message.find("config.json") != std::string::npos);
  TempDir bad_gen;
  auto g = parse_text(bad_gen, kQwenConfig, "not json");
  REQUIRE_FALSE(g.ok());
  CHECK(g.error().message.find("generation_config.json") != std::string::npos);
}

TEST_CASE("rope_inv_freq matches transformers' rope init (values from torch)") {
  ModelConfig c;
  c.head_dim = 64;
  c.rope_theta = 10000.0f;
  check_close(rope_inv_freq(c),
              {1.0, 0.7498942017555237, 0.5623413324356079, 0.4216965138912201, 0.3162277638912201,
               0.23713736236095428, 0.17782793939113617, 0.1333521455526352, 0.10000000149011612,
               0.07498941570520401, 0.05623412877321243, 0.04216964915394783, 0.03162277862429619,
               0.0237137358635664, 0.017782794311642647, 0.01333521492779255, 0.009999999776482582,
               0.007498942315578461, 0.005623413249850273, 0.0042169648222625256, 0.003162277862429619,
               0.0023713738191872835, 0.0017782794311642647, 0.0013335214462131262, 0.0010000000474974513,
               0.0007498941849917173, 0.000562341301701963, 0.00042169648804701865, 0.0003162277862429619,
               0.0002371373848291114, 0.00017782794020604342, 0.0001333521504420787});
  c.head_dim = 16;
  c.rope_theta = 1e6f;
  c.rope_scaling.type = RopeScaling::Type::kLinear;
  c.rope_scaling.factor = 4.0f;
  check_close(rope_inv_freq(c), {0.25, 0.04445698484778404, 0.007905694656074047, 0.0014058533124625683,
                                 0.0002500000118743628, 4.4456985051510856e-05, 7.905693564680405e-06,
                                 1.405853367941745e-06});
  c.head_dim = 64;
  c.rope_theta = 500000.0f;
  c.rope_scaling = {RopeScaling::Type::kLlama3, 8.0f, 1.0f, 4.0f, 8192};
  check_close(rope_inv_freq(c),
              {1.0, 0.663601279258728, 0.44036662578582764, 0.2922278344631195, 0.193922758102417,
               0.12868738174438477, 0.08539710193872452, 0.05666961893439293, 0.03760603070259094,
               0.02495540864765644, 0.016560440883040428, 0.010989529080688953, 0.00729266507551074,
               0.00483942124992609, 0.0032114461064338684, 0.0013718936825171113, 0.0005248460220173001,
               0.0001785077911335975, 7.784655463183299e-05, 5.165906986803748e-05, 3.428102354519069e-05,
               2.2748929040972143e-05, 1.5096217794052791e-05, 1.0017868589784484e-05, 6.647869668086059e-06,
               4.411534519022098e-06, 2.927499735960737e-06, 1.9426925064180978e-06, 1.289173155782919e-06,
               8.554969213037111e-07, 5.677088097399974e-07, 3.76732259610435e-07});
}

namespace {

GgufWriter llama_gguf(const std::string& arch = "llama") {
  const std::string p = arch + ".";
  GgufWriter g;
  g.str("general.architecture", arch)
      .u32(p + "embedding_length", 64)
      .u32(p + "block_count", 2)
      .u32(p + "attention.head_count", 4)
      .u32(p + "attention.head_count_kv", 2)
      .u32(p + "feed_forward_length", 128)
      .u32(p + "context_length", 4096)
      .f32(p + "attention.layer_norm_rms_epsilon", 1e-5f)
      .f32(p + "rope.freq_base", 1e6f)
      .u32("tokenizer.ggml.bos_token_id", 1)
      .u32("tokenizer.ggml.eos_token_id", 2)
      .u32("tokenizer.ggml.eot_token_id", 3)
      .strings("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "<eot>", "a"});
  return g;
}

Result<ModelConfig> gguf_config(const TempDir& dir, const GgufWriter& g) {
  g.write(dir / "m.gguf");
  auto f = GgufFile::open(dir / "m.gguf");
  if (!f.ok()) return std::move(f).take_error();
  return config_from_gguf(*f);
}

}  // namespace

TEST_CASE("gguf config: llama and qwen2 metadata") {
  TempDir dir;
  auto c = gguf_config(dir, llama_gguf());
  REQUIRE_MESSAGE(c.ok(), c.error().message);
  CHECK(c->architecture == "llama");
  CHECK(c->hidden_size == 64);
  CHECK(c->num_layers == 2);
  CHECK(c->num_heads == 4);
  CHECK(c->num_kv_heads == 2);
  CHECK(c->head_dim == 16);
  CHECK(c->intermediate_size == 128);
  CHECK(c->max_position_embeddings == 4096);
  CHECK(c->rms_norm_eps == 1e-5f);
  CHECK(c->rope_theta == 1e6f);
  CHECK(c->vocab_size == 5);  // from the token list: no token_embd tensor here
  CHECK(c->tie_word_embeddings);  // no output.weight
  CHECK_FALSE(c->attention_bias);
  CHECK(c->bos_token_id == 1);
  CHECK(c->eos_token_ids == std::vector<int32_t>{2, 3});

  // token_embd's shape gives the vocabulary; output.weight unties; linear
  // rope scaling and key_length are read.
  GgufWriter g = llama_gguf("qwen2");
  g.u32("qwen2.attention.key_length", 32)
      .str("qwen2.rope.scaling.type", "linear")
      .f32("qwen2.rope.scaling.factor", 2.0f)
      .tensor("token_embd.weight", {64, 8}, 0, ghostd::test::Bytes(64 * 8 * 4))
      .tensor("output.weight", {64, 8}, 0, ghostd::test::Bytes(64 * 8 * 4));
  TempDir dir2;
  auto q = gguf_config(dir2, g);
  REQUIRE_MESSAGE(q.ok(), q.error().message);
  CHECK(q->architecture == "qwen2");
  CHECK(q->head_dim == 32);
  CHECK(q->vocab_size == 8);
  CHECK_FALSE(q->tie_word_embeddings);
  CHECK(q->attention_bias);
  CHECK(q->rope_scaling.type == RopeScaling::Type::kLinear);
  CHECK(q->rope_scaling.factor == 2.0f);
}

TEST_CASE("gguf config: errors name the file and the key") {
  auto vocab = GgufFile::open(std::filesystem::path(GHOSTD_TEST_DATA) / "tokenizer/ggml-vocab-gpt-2.gguf");
  REQUIRE(vocab.ok());
  auto c = config_from_gguf(*vocab);
  REQUIRE_FALSE(c.ok());
  CHECK(c.error().message.find("ggml-vocab-gpt-2.gguf") != std::string::npos);
  CHECK(c.error().message.find("architecture 'gpt2' is not supported") != std::string::npos);

  TempDir dir;
  GgufWriter no_layers;
  no_layers.str("general.architecture", "llama").u32("llama.embedding_length", 64);
  auto m = gguf_config(dir, no_layers);
  REQUIRE_FALSE(m.ok());
  CHECK(m.error().message.find("m.gguf") != std::string::npos);
  CHECK(m.error().message.find("'llama.block_count'") != std::string::npos);

  TempDir dir2;
  GgufWriter yarn = llama_gguf();
  yarn.str("llama.rope.scaling.type", "yarn");
  auto y = gguf_config(dir2, yarn);
  REQUIRE_FALSE(y.ok());
  CHECK(y.error().message.find("'yarn' is not supported") != std::string::npos);

  TempDir dir3;
  GgufWriter zero = llama_gguf();
  zero.i32("llama.attention.key_length", 0);
  auto z = gguf_config(dir3, zero);
  REQUIRE_FALSE(z.ok());
  CHECK(z.error().message.find("'llama.attention.key_length' must be a positive integer") != std::string::npos);
}

namespace {

// StarCoder2-3B's config.json, shapes and all.
const char* kStarCoder2Config = R"({
  "architectures": ["Starcoder2ForCausalLM"], "model_type": "starcoder2",
  "hidden_size": 3072, "intermediate_size": 12288, "num_hidden_layers": 30,
  "num_attention_heads": 24, "num_key_value_heads": 2, "vocab_size": 49152,
  "max_position_embeddings": 16384, "norm_epsilon": 1e-05, "rope_theta": 999999.4420358813,
  "sliding_window": 4096, "use_bias": true, "hidden_act": "gelu_pytorch_tanh",
  "bos_token_id": 0, "eos_token_id": 0, "torch_dtype": "float32"
})";

// CodeGemma-2B's config.json.
const char* kGemmaConfig = R"({
  "architectures": ["GemmaForCausalLM"], "model_type": "gemma",
  "hidden_size": 2048, "intermediate_size": 16384, "num_hidden_layers": 18,
  "num_attention_heads": 8, "num_key_value_heads": 1, "head_dim": 256, "vocab_size": 256000,
  "max_position_embeddings": 8192, "rms_norm_eps": 1e-06, "rope_theta": 10000.0,
  "hidden_act": "gelu", "hidden_activation": "gelu_pytorch_tanh", "attention_bias": false,
  "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0, "torch_dtype": "bfloat16"
})";

}  // namespace

TEST_CASE("hf config: StarCoder2 and CodeGemma") {
  TempDir dir;
  auto s = parse_text(dir, kStarCoder2Config);
  REQUIRE_MESSAGE(s.ok(), s.error().message);
  CHECK(s->architecture == "starcoder2");
  CHECK(s->norm == NormType::kLayer);
  CHECK(s->mlp == MlpType::kGelu);
  CHECK(s->rms_norm_eps == 1e-5f);  // from norm_epsilon
  CHECK(s->attention_bias);
  CHECK(s->dense_bias);
  CHECK(s->sliding_window == 4096);
  CHECK(s->head_dim == 128);
  CHECK(s->tie_word_embeddings);  // transformers' default when the field is absent
  CHECK(s->embedding_scale == 0);
  CHECK_FALSE(s->norm_weight_offset);

  TempDir dir2;
  auto nb = parse_text(dir2, edit(edit(kStarCoder2Config, R"("use_bias": true)", R"("use_bias": false)"),
                                  R"("sliding_window": 4096)", R"("sliding_window": null)"));
  REQUIRE_MESSAGE(nb.ok(), nb.error().message);
  CHECK_FALSE(nb->attention_bias);
  CHECK_FALSE(nb->dense_bias);
  CHECK(nb->sliding_window == 0);

  TempDir dir3;
  auto g = parse_text(dir3, kGemmaConfig);
  REQUIRE_MESSAGE(g.ok(), g.error().message);
  CHECK(g->architecture == "gemma");
  CHECK(g->norm == NormType::kRms);
  CHECK(g->mlp == MlpType::kGeGlu);
  CHECK(g->head_dim == 256);  // explicit, not hidden / heads
  CHECK(g->num_kv_heads == 1);
  CHECK(g->tie_word_embeddings);
  CHECK(g->norm_weight_offset);
  CHECK(g->embedding_scale == static_cast<float>(std::sqrt(2048.0)));
  CHECK(g->sliding_window == 0);
  CHECK_FALSE(g->attention_bias);
}

TEST_CASE("hf config: StarCoder2 and Gemma errors name config.json and the field") {
  struct Case {
    const char* config;
    std::string from, to, message;
  };
  const Case cases[] = {
      {kStarCoder2Config, R"("use_bias": true,)", "", "missing field 'use_bias'"},
      {kStarCoder2Config, R"("use_bias": true)", R"("use_bias": "yes")", "field 'use_bias' is \"yes\", expected true or false"},
      {kStarCoder2Config, R"("hidden_act": "gelu_pytorch_tanh")", R"("hidden_act": "relu")",
       "field 'hidden_act' is \"relu\", expected \"gelu_pytorch_tanh\""},
      {kStarCoder2Config, R"("sliding_window": 4096)", R"("sliding_window": 0)",
       "field 'sliding_window' is 0, expected a positive integer or null"},
      {kStarCoder2Config, R"("norm_epsilon": 1e-05)", R"("norm_epsilon": -1)", "field 'norm_epsilon' is -1"},
      {kGemmaConfig, R"("hidden_activation": "gelu_pytorch_tanh")", R"("hidden_activation": "gelu")",
       "field 'hidden_activation' is \"gelu\", expected \"gelu_pytorch_tanh\""},
  };
  for (const Case& c : cases) {
    CAPTURE(c.message);
    TempDir dir;
    auto r = parse_text(dir, edit(c.config, c.from, c.to));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("config.json") != std::string::npos);
    CHECK(r.error().message.find(c.message) != std::string::npos);
  }
}

TEST_CASE("gguf config: starcoder2 and gemma metadata") {
  TempDir dir;
  GgufWriter s;
  s.str("general.architecture", "starcoder2")
      .u32("starcoder2.embedding_length", 64)
      .u32("starcoder2.block_count", 2)
      .u32("starcoder2.attention.head_count", 4)
      .u32("starcoder2.attention.head_count_kv", 2)
      .u32("starcoder2.feed_forward_length", 256)
      .u32("starcoder2.context_length", 4096)
      .u32("starcoder2.attention.sliding_window", 16)
      .f32("starcoder2.attention.layer_norm_epsilon", 1e-5f)
      .strings("tokenizer.ggml.tokens", {"a", "b"})
      .tensor("blk.0.attn_q.bias", {64}, 0, ghostd::test::Bytes(64 * 4));
  auto c = gguf_config(dir, s);
  REQUIRE_MESSAGE(c.ok(), c.error().message);
  CHECK(c->architecture == "starcoder2");
  CHECK(c->norm == NormType::kLayer);
  CHECK(c->mlp == MlpType::kGelu);
  CHECK(c->rms_norm_eps == 1e-5f);
  CHECK(c->attention_bias);
  CHECK(c->dense_bias);
  CHECK(c->sliding_window == 16);

  // The LayerNorm epsilon is starcoder2's own key; the RMS one is not read.
  TempDir dir2;
  GgufWriter no_eps = llama_gguf("starcoder2");
  auto e = gguf_config(dir2, no_eps);
  REQUIRE_FALSE(e.ok());
  CHECK(e.error().message.find("'starcoder2.attention.layer_norm_epsilon'") != std::string::npos);

  TempDir dir3;
  GgufWriter g = llama_gguf("gemma");
  g.u32("gemma.attention.key_length", 32);
  auto gm = gguf_config(dir3, g);
  REQUIRE_MESSAGE(gm.ok(), gm.error().message);
  CHECK(gm->architecture == "gemma");
  CHECK(gm->mlp == MlpType::kGeGlu);
  CHECK(gm->head_dim == 32);
  CHECK_FALSE(gm->norm_weight_offset);  // llama.cpp stored 1 + w already
  CHECK(gm->embedding_scale == 8.0f);
  CHECK(gm->tie_word_embeddings);
}
