#include "runtime/engine/sampling.h"

#include <algorithm>
#include <cmath>

namespace ghostd::runtime {

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

double Sampler::survivors(std::span<const float> logits) {
  auto& c = scratch_;
  c.clear();
  c.reserve(logits.size());
  const float inv_t = 1.0f / params_.temperature;
  for (size_t i = 0; i < logits.size(); ++i)
    if (std::isfinite(logits[i])) c.emplace_back(logits[i] * inv_t, static_cast<int32_t>(i));
  if (c.empty()) return 0;
  auto by_logit = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  size_t keep = c.size();
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < keep) {
    keep = params_.top_k;
    std::partial_sort(c.begin(), c.begin() + keep, c.end(), by_logit);
    c.resize(keep);
  } else {
    std::sort(c.begin(), c.end(), by_logit);
  }
  // Softmax over the survivors (sorted, largest first).
  const float mx = c.front().first;
  double total = 0;
  for (auto& [v, id] : c) {
    v = std::exp(v - mx);
    total += v;
  }
  if (params_.top_p < 1.0f && params_.top_p > 0.0f) {
    double cum = 0;
    size_t n = 0;
    while (n < c.size()) {
      cum += c[n].first / total;
      ++n;
      if (cum >= params_.top_p) break;
    }
    c.resize(n);
    total = 0;
    for (auto& p : c) total += p.first;
  }
  return total;
}

int32_t Sampler::sample(std::span<const float> logits) {
  if (greedy() || logits.size() <= 1) return argmax(logits);
  const double total = survivors(logits);
  if (scratch_.empty()) return argmax(logits);
  std::uniform_real_distribution<double> u(0.0, total);
  double r = u(rng_), acc = 0;
  for (const auto& [p, id] : scratch_) {
    acc += p;
    if (r < acc) return id;
  }
  return scratch_.back().second;
}

void Sampler::probabilities(std::span<const float> logits, std::vector<float>& probs) {
  probs.assign(logits.size(), 0.0f);
  if (logits.empty()) return;
  const double total = greedy() ? 0 : survivors(logits);
  if (greedy() || scratch_.empty()) {
    probs[static_cast<size_t>(argmax(logits))] = 1.0f;
    return;
  }
  for (const auto& [v, id] : scratch_) probs[static_cast<size_t>(id)] = static_cast<float>(v / total);
}

int32_t Sampler::draw(std::span<const float> probs, double total) {
  std::uniform_real_distribution<double> u(0.0, total);
  const double r = u(rng_);
  double acc = 0;
  int32_t last = -1;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] <= 0.0f) continue;
    acc += probs[i];
    last = static_cast<int32_t>(i);
    if (r < acc) return last;
  }
  return last < 0 ? 0 : last;  // rounding: the last token with mass
}

double Sampler::uniform() {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  return u(rng_);
}

}  // namespace ghostd::runtime
