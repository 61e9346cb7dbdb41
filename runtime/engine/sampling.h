// Token selection from logits: greedy, temperature, top-k, top-p, with a
// per-sequence seeded generator so a seed reproduces a completion.
#pragma once

#include "runtime/core/argmax.h"
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "runtime/engine/engine_api.h"

namespace ghostd::runtime {


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
