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

namespace {

// Children of each node and of the root (index 0 = the root; node i at i + 1),
// in the tree's order.
std::vector<std::vector<int32_t>> children_of(const DraftTree& tree) {
  std::vector<std::vector<int32_t>> kids(tree.size() + 1);
  for (size_t i = 0; i < tree.size(); ++i)
    kids[static_cast<size_t>(tree.parents[i] + 1)].push_back(static_cast<int32_t>(i));
  return kids;
}

}  // namespace

std::vector<int32_t> verify_tree_greedy(const DraftTree& tree, std::span<const int32_t> argmax,
                                        std::vector<int32_t>& path) {
  assert(argmax.size() == tree.size() + 1);
  const auto kids = children_of(tree);
  std::vector<int32_t> out;
  path.clear();
  size_t row = 0;  // feed index of the current node
  while (true) {
    const int32_t want = argmax[row];
    out.push_back(want);
    int32_t next = -1;
    for (int32_t c : kids[row])
      if (tree.tokens[static_cast<size_t>(c)] == want) next = c;
    if (next < 0) return out;
    path.push_back(next);
    row = static_cast<size_t>(next) + 1;
  }
}

std::vector<int32_t> verify_tree_sampled(const DraftTree& tree, std::span<const float> p, size_t vocab,
                                         Sampler& sampler, std::vector<float>& scratch,
                                         std::vector<int32_t>& path) {
  assert(p.size() == (tree.size() + 1) * vocab);
  const auto kids = children_of(tree);
  std::vector<int32_t> out;
  path.clear();
  size_t row = 0;
  while (true) {
    const auto pr = p.subspan(row * vocab, vocab);
    scratch.assign(pr.begin(), pr.end());
    double total = 0;
    for (float x : scratch) total += x;
    int32_t next = -1;
    for (int32_t c : kids[row]) {
      const size_t d = static_cast<size_t>(tree.tokens[static_cast<size_t>(c)]);
      const double pd = d < vocab ? scratch[d] : 0.0;
      if (pd > 0.0 && total > 0.0 && (pd >= total || sampler.uniform() * total < pd)) {
        next = c;
        break;
      }
      if (d < vocab && scratch[d] != 0.0f) {
        scratch[d] = 0.0f;
        total = 0;  // summed again, not subtracted: draw() wants the exact sum
        for (float x : scratch) total += x;
      }
    }
    if (next < 0) {
      // Rounding can leave nothing: the row itself is then right.
      if (!(total > 1e-12)) {
        scratch.assign(pr.begin(), pr.end());
        total = 0;
        for (float x : scratch) total += x;
      }
      out.push_back(sampler.draw(scratch, total));
      return out;
    }
    out.push_back(tree.tokens[static_cast<size_t>(next)]);
    path.push_back(next);
    row = static_cast<size_t>(next) + 1;
  }
}

}  // namespace ghostd::runtime
