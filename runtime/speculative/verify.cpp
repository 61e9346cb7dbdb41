#include "runtime/speculative/verify.h"

#include <algorithm>
#include <cassert>

namespace ghostd::runtime {

std::vector<int32_t> verify_greedy(std::span<const int32_t> drafts, std::span<const int32_t> argmax) {
  assert(argmax.size() == drafts.size() + 1);
  std::vector<int32_t> out;
  for (size_t i = 0; i <= drafts.size(); ++i) {
    out.push_back(argmax[i]);
    if (i == drafts.size() || argmax[i] != drafts[i]) break;
  }
  return out;
}

std::vector<int32_t> verify_sampled(std::span<const int32_t> drafts, std::span<const float> p,
                                    std::span<const float> q, size_t vocab, Sampler& sampler,
                                    std::vector<float>& scratch) {
  const size_t k = drafts.size();
  assert(p.size() == (k + 1) * vocab);
  assert(q.empty() || q.size() == k * vocab);
  std::vector<int32_t> out;
  for (size_t i = 0; i < k; ++i) {
    const auto pi = p.subspan(i * vocab, vocab);
    const size_t d = static_cast<size_t>(drafts[i]);
    const double pd = d < vocab ? pi[d] : 0.0;
    const double qd = q.empty() ? 1.0 : (d < vocab ? q[i * vocab + d] : 0.0);
    // Accept with probability min(1, p/q); q(d) > 0 for a token drawn from q.
    if (pd > 0.0 && (pd >= qd || sampler.uniform() * qd < pd)) {
      out.push_back(drafts[i]);
      continue;
    }
    scratch.assign(pi.begin(), pi.end());
    double total = 0;
    if (q.empty()) {
      if (d < vocab) scratch[d] = 0.0f;
      for (float x : scratch) total += x;
    } else {
      const auto qi = q.subspan(i * vocab, vocab);
      for (size_t t = 0; t < vocab; ++t) {
        scratch[t] = std::max(0.0f, pi[t] - qi[t]);
        total += scratch[t];
      }
    }
    // p == q up to rounding leaves no residual: p itself is then right.
    if (!(total > 0.0)) {
      scratch.assign(pi.begin(), pi.end());
      total = 0;
      for (float x : scratch) total += x;
    }
    out.push_back(sampler.draw(scratch, total));
    return out;
  }
  out.push_back(sampler.draw(p.subspan(k * vocab, vocab)));
  return out;
}

}  // namespace ghostd::runtime
