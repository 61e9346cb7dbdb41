#include "runtime/engine/sampling.h"

#include <algorithm>
#include <cmath>

namespace ghostd::runtime {

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

int32_t Sampler::sample(std::span<const float> logits) {
  if (greedy() || logits.size() <= 1) return argmax(logits);
  auto& c = scratch_;
  c.clear();
  c.reserve(logits.size());
  const float inv_t = 1.0f / params_.temperature;
  for (size_t i = 0; i < logits.size(); ++i)
    if (std::isfinite(logits[i])) c.emplace_back(logits[i] * inv_t, static_cast<int32_t>(i));
  if (c.empty()) return argmax(logits);
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
  std::uniform_real_distribution<double> u(0.0, total);
  double r = u(rng_), acc = 0;
  for (const auto& [p, id] : c) {
    acc += p;
    if (r < acc) return id;
  }
  return c.back().second;
}

}  // namespace ghostd::runtime
