// Token selection from logits: greedy, temperature, top-k, top-p, with a
// per-sequence seeded generator so a seed reproduces a completion.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "runtime/engine/engine_api.h"

namespace ghostd::runtime {

// Index of the largest logit; the first one on ties (as torch.argmax).
int32_t argmax(std::span<const float> logits);

// Thread-safety: one instance per sequence; not shared.
class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  bool greedy() const { return params_.temperature <= 0.0f; }
  int32_t sample(std::span<const float> logits);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> scratch_;
};

}  // namespace ghostd::runtime
