#include "runtime/model/model_config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "runtime/model/gguf.h"

namespace ghostd::runtime {
namespace {

using nlohmann::json;

Result<json> read_json(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{"cannot read " + path.string()};
  std::stringstream ss;
  ss << in.rdbuf();
  json j = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error{path.string() + ": not valid JSON"};
  if (!j.is_object()) return Error{path.string() + ": expected a JSON object"};
  return j;
}

// Field readers for config.json: `file` names the file in errors. A missing
// or null field takes `fallback` when given, else is an error.
class JsonFields {
 public:
  JsonFields(const json& j, std::string file) : j_(j), file_(std::move(file)) {}

  const json* get(const std::string& key) const {
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }

  Result<int> positive_int(const std::string& key, std::optional<int> fallback = std::nullopt) const {
    const json* v = get(key);
    if (v == nullptr) {
      if (fallback) return *fallback;
      return Error{file_ + ": missing field '" + key + "' (expected a positive integer)"};
    }
    if (!v->is_number_integer() || v->get<int64_t>() <= 0 ||
        v->get<int64_t>() > std::numeric_limits<int>::max()) {
      return Error{file_ + ": field '" + key + "' is " + v->dump() + ", expected a positive integer"};
    }
    return static_cast<int>(v->get<int64_t>());
  }

  Result<float> positive_float(const std::string& key, std::optional<float> fallback = std::nullopt) const {
    const json* v = get(key);
    if (v == nullptr) {
      if (fallback) return *fallback;
      return Error{file_ + ": missing field '" + key + "' (expected a positive number)"};
    }
    if (!v->is_number() || !(v->get<double>() > 0)) {
      return Error{file_ + ": field '" + key + "' is " + v->dump() + ", expected a positive number"};
    }
    return static_cast<float>(v->get<double>());
  }

  Result<bool> boolean(const std::string& key, bool fallback) const {
    const json* v = get(key);
    if (v == nullptr) return fallback;
    if (!v->is_boolean()) return Error{file_ + ": field '" + key + "' is " + v->dump() + ", expected true or false"};
    return v->get<bool>();
  }

  const std::string& file() const { return file_; }

 private:
  const json& j_;
  std::string file_;
};

#define GHOSTD_ASSIGN(lhs, expr)                          \
  do {                                                    \
    auto ghostd_v_ = (expr);                              \
    if (!ghostd_v_.ok()) return std::move(ghostd_v_).take_error(); \
    lhs = *ghostd_v_;                                     \
  } while (0)

// rope_scaling (older transformers) or rope_parameters (newer) object.
Status parse_rope_object(const json& obj, const std::string& file, const std::string& field, ModelConfig* c) {
  JsonFields f(obj, file);
  const json* type = f.get("rope_type");
  if (type == nullptr) type = f.get("type");
  const std::string t = type == nullptr ? "default" : type->is_string() ? type->get<std::string>() : type->dump();
  if (t == "default") {
    c->rope_scaling = RopeScaling{};
  } else if (t == "linear") {
    c->rope_scaling.type = RopeScaling::Type::kLinear;
    GHOSTD_ASSIGN(c->rope_scaling.factor, f.positive_float("factor"));
  } else if (t == "llama3") {
    c->rope_scaling.type = RopeScaling::Type::kLlama3;
    GHOSTD_ASSIGN(c->rope_scaling.factor, f.positive_float("factor"));
    GHOSTD_ASSIGN(c->rope_scaling.low_freq_factor, f.positive_float("low_freq_factor"));
    GHOSTD_ASSIGN(c->rope_scaling.high_freq_factor, f.positive_float("high_freq_factor"));
    GHOSTD_ASSIGN(c->rope_scaling.original_max_position_embeddings,
                  f.positive_int("original_max_position_embeddings"));
    if (c->rope_scaling.high_freq_factor <= c->rope_scaling.low_freq_factor) {
      return Error{file + ": " + field + ": high_freq_factor must exceed low_freq_factor"};
    }
  } else {
    return Error{file + ": " + field + " type '" + t + "' is not supported (supported: default, linear, llama3)"};
  }
  return {};
}

Status read_token_ids(const JsonFields& f, ModelConfig* c, bool* have_bos, bool* have_eos) {
  if (const json* b = f.get("bos_token_id"); b != nullptr && !*have_bos) {
    if (!b->is_number_integer() || b->get<int64_t>() < 0 || b->get<int64_t>() > std::numeric_limits<int32_t>::max()) {
      return Error{f.file() + ": field 'bos_token_id' is " + b->dump() + ", expected a token id"};
    }
    c->bos_token_id = b->get<int32_t>();
    *have_bos = true;
  }
  if (const json* e = f.get("eos_token_id"); e != nullptr && !*have_eos) {
    const json list = e->is_array() ? *e : json::array({*e});
    for (const auto& id : list) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
        return Error{f.file() + ": field 'eos_token_id' is " + e->dump() + ", expected token ids"};
      }
      c->eos_token_ids.push_back(id.get<int32_t>());
    }
    *have_eos = true;
  }
  return {};
}

}  // namespace

std::vector<float> rope_inv_freq(const ModelConfig& config) {
  const int dim = config.head_dim;
  std::vector<float> inv(static_cast<size_t>(dim / 2));
  for (int i = 0; i < dim / 2; ++i) {
    // transformers: 1 / base ** (arange(0, dim, 2).float() / dim), in float32.
    const float e = static_cast<float>(2 * i) / static_cast<float>(dim);
    inv[i] = 1.0f / static_cast<float>(std::pow(static_cast<double>(config.rope_theta), static_cast<double>(e)));
  }
  const RopeScaling& s = config.rope_scaling;
  if (s.type == RopeScaling::Type::kLinear) {
    for (float& f : inv) f /= s.factor;  // positions / factor
  } else if (s.type == RopeScaling::Type::kLlama3) {
    const double old_len = s.original_max_position_embeddings;
    const double low_wavelen = old_len / s.low_freq_factor;
    const double high_wavelen = old_len / s.high_freq_factor;
    for (float& f : inv) {
      const double wavelen = 2 * M_PI / f;
      if (wavelen > low_wavelen) {
        f = static_cast<float>(f / s.factor);  // low frequencies: fully scaled
      } else if (wavelen >= high_wavelen) {
        // medium: interpolate between scaled and unscaled
        const double smooth = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = static_cast<float>((1 - smooth) * f / s.factor + smooth * f);
      }
    }
  }
  return inv;
}

Result<ModelConfig> parse_hf_config(const std::filesystem::path& model_dir) {
  const auto config_path = model_dir / "config.json";
  auto parsed = read_json(config_path);
  if (!parsed.ok()) return std::move(parsed).take_error();
  const json& j = *parsed;
  const std::string file = config_path.string();
  JsonFields f(j, file);
  ModelConfig c;

  static constexpr const char* kSupported =
      "LlamaForCausalLM, Qwen2ForCausalLM, Starcoder2ForCausalLM, GemmaForCausalLM";
  if (const json* archs = f.get("architectures")) {
    if (!archs->is_array() || archs->empty()) return Error{file + ": field 'architectures' must be a non-empty list"};
    std::string names;
    for (const auto& a : *archs) {
      const std::string s = a.is_string() ? a.get<std::string>() : a.dump();
      if (s == "LlamaForCausalLM") c.architecture = "llama";
      else if (s == "Qwen2ForCausalLM") c.architecture = "qwen2";
      else if (s == "Starcoder2ForCausalLM") c.architecture = "starcoder2";
      else if (s == "GemmaForCausalLM") c.architecture = "gemma";
      if (!c.architecture.empty()) break;
      names += (names.empty() ? "" : ", ") + s;
    }
    if (c.architecture.empty()) {
      return Error{file + ": architecture " + names + " is not supported (supported: " + kSupported + ")"};
    }
  } else if (const json* mt = f.get("model_type"); mt != nullptr && mt->is_string() &&
                                                   (*mt == "llama" || *mt == "qwen2" || *mt == "starcoder2" ||
                                                    *mt == "gemma")) {
    c.architecture = mt->get<std::string>();
  } else {
    return Error{file + ": missing field 'architectures' (supported: " + kSupported + ")"};
  }
  const bool qwen2 = c.architecture == "qwen2";
  const bool starcoder2 = c.architecture == "starcoder2";
  const bool gemma = c.architecture == "gemma";

  GHOSTD_ASSIGN(c.hidden_size, f.positive_int("hidden_size"));
  GHOSTD_ASSIGN(c.num_layers, f.positive_int("num_hidden_layers"));
  GHOSTD_ASSIGN(c.num_heads, f.positive_int("num_attention_heads"));
  GHOSTD_ASSIGN(c.num_kv_heads, f.positive_int("num_key_value_heads", c.num_heads));
  GHOSTD_ASSIGN(c.intermediate_size, f.positive_int("intermediate_size"));
  GHOSTD_ASSIGN(c.vocab_size, f.positive_int("vocab_size"));
  // Defaults are transformers' LlamaConfig / Qwen2Config defaults.
  GHOSTD_ASSIGN(c.max_position_embeddings,
                f.positive_int("max_position_embeddings", qwen2 ? 32768 : starcoder2 ? 4096 : gemma ? 8192 : 2048));
  if (c.num_heads % c.num_kv_heads != 0) {
    return Error{file + ": num_attention_heads (" + std::to_string(c.num_heads) +
                 ") must be a multiple of num_key_value_heads (" + std::to_string(c.num_kv_heads) + ")"};
  }
  if (f.get("head_dim") == nullptr && c.hidden_size % c.num_heads != 0) {
    return Error{file + ": hidden_size must be a multiple of num_attention_heads when head_dim is absent"};
  }
  GHOSTD_ASSIGN(c.head_dim, f.positive_int("head_dim", c.hidden_size / c.num_heads));
  if (c.head_dim % 2 != 0) return Error{file + ": field 'head_dim' must be even for RoPE"};
  if (starcoder2) {
    GHOSTD_ASSIGN(c.rms_norm_eps, f.positive_float("norm_epsilon", 1e-5f));
  } else {
    GHOSTD_ASSIGN(c.rms_norm_eps, f.positive_float("rms_norm_eps", 1e-6f));
  }

  if (const json* rp = f.get("rope_parameters")) {  // transformers >= 5
    if (!rp->is_object()) return Error{file + ": field 'rope_parameters' must be an object"};
    GHOSTD_ASSIGN(c.rope_theta, JsonFields(*rp, file).positive_float("rope_theta", 10000.0f));
    GHOSTD_TRY_STATUS(parse_rope_object(*rp, file, "rope_parameters", &c));
  } else {
    GHOSTD_ASSIGN(c.rope_theta, f.positive_float("rope_theta", 10000.0f));
    if (const json* rs = f.get("rope_scaling")) {
      if (!rs->is_object()) return Error{file + ": field 'rope_scaling' must be an object or null"};
      GHOSTD_TRY_STATUS(parse_rope_object(*rs, file, "rope_scaling", &c));
    }
  }
  // StarCoder2 and Gemma leave tying to transformers' default (true).
  GHOSTD_ASSIGN(c.tie_word_embeddings, f.boolean("tie_word_embeddings", starcoder2 || gemma));
  if (qwen2) {
    c.attention_bias = true;  // Qwen2 always has q/k/v bias
  } else if (starcoder2) {
    // use_bias switches every linear's bias; the checkpoint's tensors follow
    // it, so guessing would only move the error to a missing tensor.
    const json* ub = f.get("use_bias");
    if (ub == nullptr) return Error{file + ": missing field 'use_bias' (expected true or false: StarCoder2's linear biases)"};
    GHOSTD_ASSIGN(c.attention_bias, f.boolean("use_bias", true));
    c.dense_bias = c.attention_bias;
  } else {
    GHOSTD_ASSIGN(c.attention_bias, f.boolean("attention_bias", false));
  }
  if (starcoder2 || gemma) {
    // Both use the tanh GELU (Gemma reads hidden_activation; its hidden_act
    // is ignored by transformers).
    const char* key = gemma ? "hidden_activation" : "hidden_act";
    const json* act = f.get(key);
    const std::string a = act == nullptr ? "gelu_pytorch_tanh" : act->is_string() ? act->get<std::string>() : act->dump();
    if (a != "gelu_pytorch_tanh") {
      return Error{file + ": field '" + key + "' is \"" + a + "\", expected \"gelu_pytorch_tanh\""};
    }
  }
  if (starcoder2) {
    c.norm = NormType::kLayer;
    c.mlp = MlpType::kGelu;
    if (const json* sw = f.get("sliding_window")) {  // null: no window
      if (!sw->is_number_integer() || sw->get<int64_t>() <= 0 || sw->get<int64_t>() > std::numeric_limits<int>::max())
        return Error{file + ": field 'sliding_window' is " + sw->dump() + ", expected a positive integer or null"};
      c.sliding_window = static_cast<int>(sw->get<int64_t>());
    }
  } else if (gemma) {
    c.mlp = MlpType::kGeGlu;
    c.norm_weight_offset = true;
    // transformers multiplies by sqrt(hidden_size) cast to the activation
    // dtype; ghostd's activations are float32.
    c.embedding_scale = static_cast<float>(std::sqrt(static_cast<double>(c.hidden_size)));
  }

  bool have_bos = false, have_eos = false;
  const auto gen_path = model_dir / "generation_config.json";
  if (std::filesystem::exists(gen_path)) {
    auto gen = read_json(gen_path);
    if (!gen.ok()) return std::move(gen).take_error();
    GHOSTD_TRY_STATUS(read_token_ids(JsonFields(*gen, gen_path.string()), &c, &have_bos, &have_eos));
  }
  GHOSTD_TRY_STATUS(read_token_ids(f, &c, &have_bos, &have_eos));
  return c;
}

Result<ModelConfig> config_from_gguf(const GgufFile& gguf) {
  const std::string file = gguf.path().string();
  ModelConfig c;
  auto arch = gguf.get_string("general.architecture");
  if (!arch) return Error{file + ": missing metadata 'general.architecture' (expected llama, qwen2, starcoder2 or gemma)"};
  if (*arch != "llama" && *arch != "qwen2" && *arch != "starcoder2" && *arch != "gemma") {
    return Error{file + ": architecture '" + *arch + "' is not supported (supported: llama, qwen2, starcoder2, gemma)"};
  }
  c.architecture = *arch;
  const std::string p = *arch + ".";

  auto int_key = [&](const std::string& key, std::optional<int> fallback) -> Result<int> {
    const GgufValue* v = gguf.find(key);
    if (v == nullptr) {
      if (fallback) return *fallback;
      return Error{file + ": missing metadata '" + key + "' (expected a positive integer)"};
    }
    const auto x = v->as_int();
    if (!x || *x <= 0 || *x > std::numeric_limits<int>::max()) {
      return Error{file + ": metadata '" + key + "' must be a positive integer"};
    }
    return static_cast<int>(*x);
  };
  auto float_key = [&](const std::string& key, std::optional<float> fallback) -> Result<float> {
    const GgufValue* v = gguf.find(key);
    if (v == nullptr) {
      if (fallback) return *fallback;
      return Error{file + ": missing metadata '" + key + "' (expected a positive number)"};
    }
    const auto x = v->as_float();
    if (!x || !(*x > 0)) return Error{file + ": metadata '" + key + "' must be a positive number"};
    return static_cast<float>(*x);
  };

  GHOSTD_ASSIGN(c.hidden_size, int_key(p + "embedding_length", std::nullopt));
  GHOSTD_ASSIGN(c.num_layers, int_key(p + "block_count", std::nullopt));
  GHOSTD_ASSIGN(c.num_heads, int_key(p + "attention.head_count", std::nullopt));
  GHOSTD_ASSIGN(c.num_kv_heads, int_key(p + "attention.head_count_kv", c.num_heads));
  GHOSTD_ASSIGN(c.intermediate_size, int_key(p + "feed_forward_length", std::nullopt));
  GHOSTD_ASSIGN(c.max_position_embeddings, int_key(p + "context_length", std::nullopt));
  if (c.num_heads % c.num_kv_heads != 0) {
    return Error{file + ": " + p + "attention.head_count must be a multiple of head_count_kv"};
  }
  if (gguf.find(p + "attention.key_length") == nullptr && c.hidden_size % c.num_heads != 0) {
    return Error{file + ": " + p + "embedding_length must be a multiple of attention.head_count"};
  }
  GHOSTD_ASSIGN(c.head_dim, int_key(p + "attention.key_length", c.hidden_size / c.num_heads));
  if (c.head_dim % 2 != 0) return Error{file + ": head dimension must be even for RoPE"};
  const bool starcoder2 = c.architecture == "starcoder2", gemma = c.architecture == "gemma";
  GHOSTD_ASSIGN(c.rms_norm_eps, float_key(p + (starcoder2 ? "attention.layer_norm_epsilon" : "attention.layer_norm_rms_epsilon"),
                                          std::nullopt));
  GHOSTD_ASSIGN(c.rope_theta, float_key(p + "rope.freq_base", 10000.0f));

  const std::string scaling = gguf.get_string(p + "rope.scaling.type").value_or("none");
  if (scaling == "linear") {
    c.rope_scaling.type = RopeScaling::Type::kLinear;
    GHOSTD_ASSIGN(c.rope_scaling.factor, float_key(p + "rope.scaling.factor", std::nullopt));
  } else if (scaling != "none") {
    return Error{file + ": " + p + "rope.scaling.type '" + scaling + "' is not supported (supported: none, linear)"};
  } else if (auto factor = gguf.get_float(p + "rope.scale_linear"); factor && *factor != 1.0) {
    c.rope_scaling.type = RopeScaling::Type::kLinear;  // older converters
    c.rope_scaling.factor = static_cast<float>(*factor);
  }
  if (c.rope_scaling.type == RopeScaling::Type::kLinear && !(c.rope_scaling.factor > 0)) {
    return Error{file + ": rope scaling factor must be positive"};
  }

  const TensorView* embd = gguf.find_tensor("token_embd.weight");
  if (embd != nullptr && embd->shape.size() == 2 && embd->shape[0] > 0 &&
      embd->shape[0] <= std::numeric_limits<int>::max()) {
    c.vocab_size = static_cast<int>(embd->shape[0]);
  } else if (const GgufValue* tokens = gguf.find("tokenizer.ggml.tokens");
             tokens != nullptr && tokens->array_size() > 0 &&
             tokens->array_size() <= static_cast<size_t>(std::numeric_limits<int>::max())) {
    c.vocab_size = static_cast<int>(tokens->array_size());
  } else {
    GHOSTD_ASSIGN(c.vocab_size, int_key(p + "vocab_size", std::nullopt));
  }

  c.tie_word_embeddings = gguf.find_tensor("output.weight") == nullptr;
  c.attention_bias = c.architecture == "qwen2" || gguf.find_tensor("blk.0.attn_q.bias") != nullptr;
  if (starcoder2) {
    // GGUF has no use_bias key: the biases are there or not, all together.
    c.dense_bias = c.attention_bias;
    c.norm = NormType::kLayer;
    c.mlp = MlpType::kGelu;
    if (gguf.find(p + "attention.sliding_window") != nullptr) {
      GHOSTD_ASSIGN(c.sliding_window, int_key(p + "attention.sliding_window", std::nullopt));
    }
  } else if (gemma) {
    c.mlp = MlpType::kGeGlu;
    // llama.cpp's converter stores the norm weights as 1 + w already.
    c.norm_weight_offset = false;
    c.embedding_scale = static_cast<float>(std::sqrt(static_cast<double>(c.hidden_size)));
  }

  auto token_id = [&](const std::string& key) -> std::optional<int32_t> {
    const auto v = gguf.get_int(key);
    if (!v || *v < 0 || *v > std::numeric_limits<int32_t>::max()) return std::nullopt;
    return static_cast<int32_t>(*v);
  };
  if (auto bos = token_id("tokenizer.ggml.bos_token_id")) c.bos_token_id = *bos;
  // End of generation: eos plus llama.cpp's end-of-turn / end-of-message ids.
  for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    auto id = token_id(key);
    if (id && std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), *id) == c.eos_token_ids.end()) {
      c.eos_token_ids.push_back(*id);
    }
  }
  return c;
}

#undef GHOSTD_ASSIGN

}  // namespace ghostd::runtime
