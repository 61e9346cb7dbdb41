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

  // The distribution sample() draws from (temperature, top-k, top-p applied),
  // dense over the vocabulary: probs[i] sums to 1. Speculative verify with
  // rejection sampling needs it for the target's and the draft's rows.
  void probabilities(std::span<const float> logits, std::vector<float>& probs);
  // A draw from a dense distribution (sums to `total`, default 1).
  int32_t draw(std::span<const float> probs, double total = 1.0);
  // Uniform in [0, 1) from this sequence's generator.
  double uniform();

 private:
  // Fills scratch_ with (weight, id) of the tokens that survive temperature,
  // top-k and top-p, largest first; returns the weights' sum (0: none).
  double survivors(std::span<const float> logits);

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> scratch_;
};

}  // namespace ghostd::runtime
