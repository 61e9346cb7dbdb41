// Model hyper-parameters for the supported architectures (Llama, Qwen2),
// read from a Hugging Face config.json or from GGUF metadata.
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

// Thread-safety: a plain value type.
struct ModelConfig {
  std::string architecture;  // "llama" or "qwen2"
  int hidden_size = 0, num_layers = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0,
      intermediate_size = 0, vocab_size = 0, max_position_embeddings = 0;
  float rms_norm_eps = 1e-6f, rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // qwen2 q/k/v bias
  int32_t bos_token_id = -1;
  std::vector<int32_t> eos_token_ids;
};

// head_dim/2 inverse frequencies theta^(-2i/head_dim), with the scaling
// applied as transformers' default / linear / llama3 rope init does.
std::vector<float> rope_inv_freq(const ModelConfig& config);

// Reads model_dir/config.json (LlamaForCausalLM or Qwen2ForCausalLM) and, for
// bos/eos, model_dir/generation_config.json when present.
Result<ModelConfig> parse_hf_config(const std::filesystem::path& model_dir);

// Reads general.architecture (llama or qwen2) and the <arch>.* keys.
Result<ModelConfig> config_from_gguf(const GgufFile& gguf);

}  // namespace ghostd::runtime
