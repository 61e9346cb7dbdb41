// Model hyper-parameters for the supported architectures (Llama, Qwen2,
// StarCoder2, Gemma), read from a Hugging Face config.json or from GGUF
// metadata.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "runtime/core/result.h"

namespace ghostd::runtime {

class GgufFile;

struct RopeScaling {
  enum class Type { kNone, kLinear, kLlama3 } type = Type::kNone;
  float factor = 1, low_freq_factor = 1, high_freq_factor = 4;
  int original_max_position_embeddings = 8192;
};

// How a layer is built, beyond the shapes: the forward reads these, never
// the architecture name.
enum class NormType {
  kRms,    // RMSNorm, weight only (Llama, Qwen2, Gemma)
  kLayer,  // LayerNorm with weight and bias (StarCoder2)
};
enum class MlpType {
  kSwiGlu,  // down(silu(gate(x)) * up(x))
  kGeGlu,   // down(gelu_tanh(gate(x)) * up(x)) (Gemma)
  kGelu,    // c_proj(gelu_tanh(c_fc(x))), not gated (StarCoder2)
};

// Thread-safety: a plain value type.
struct ModelConfig {
  std::string architecture;  // "llama", "qwen2", "starcoder2" or "gemma"
  int hidden_size = 0, num_layers = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0,
      intermediate_size = 0, vocab_size = 0, max_position_embeddings = 0;
  float rms_norm_eps = 1e-6f;  // the epsilon of every norm (StarCoder2's norm_epsilon too)
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v bias (Qwen2; StarCoder2's use_bias)
  bool dense_bias = false;      // o_proj and MLP biases (StarCoder2's use_bias)
  NormType norm = NormType::kRms;
  MlpType mlp = MlpType::kSwiGlu;
  // Gemma's RMSNorm computes x * (1 + w) with w as HF stores it; llama.cpp's
  // converter already stored 1 + w in GGUF files. True: add 1 at load time.
  bool norm_weight_offset = false;
  float embedding_scale = 0;  // multiplies the embeddings when set (Gemma: sqrt(hidden_size))
  int sliding_window = 0;     // attend to the last this many positions; 0: all
  int32_t bos_token_id = -1;
  std::vector<int32_t> eos_token_ids;
};

// head_dim/2 inverse frequencies theta^(-2i/head_dim), with the scaling
// applied as transformers' default / linear / llama3 rope init does.
std::vector<float> rope_inv_freq(const ModelConfig& config);

// Reads model_dir/config.json (LlamaForCausalLM, Qwen2ForCausalLM,
// Starcoder2ForCausalLM or GemmaForCausalLM) and, for bos/eos,
// model_dir/generation_config.json when present.
Result<ModelConfig> parse_hf_config(const std::filesystem::path& model_dir);

// Reads general.architecture (llama, qwen2, starcoder2 or gemma) and the
// <arch>.* keys.
Result<ModelConfig> config_from_gguf(const GgufFile& gguf);

}  // namespace ghostd::runtime
