#include "runtime/speculative/verify.h"

#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

namespace ghostd::runtime {
namespace {

// Pearson's chi-square of observed counts against expected probabilities.
double chi_square(const std::vector<int>& counts, std::span<const float> probs, int n) {
  double chi = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double e = probs[i] * n;
    if (e > 0) chi += (counts[i] - e) * (counts[i] - e) / e;
    else CHECK(counts[i] == 0);  // a token the target never samples is never emitted
  }
  return chi;
}

std::vector<float> random_dist(std::mt19937& rng, size_t v, bool with_zero) {
  std::uniform_real_distribution<float> u(0.05f, 1.0f);
  std::vector<float> d(v);
  float total = 0;
  for (float& x : d) total += (x = u(rng));
  if (with_zero) {
    total -= d[v - 1];
    d[v - 1] = 0;
  }
  for (float& x : d) x /= total;
  return d;
}

}  // namespace

TEST_CASE("verify: greedy keeps the matching draft prefix and the target's next token") {
  const std::vector<int32_t> drafts{4, 7, 9};
  CHECK(verify_greedy(drafts, std::vector<int32_t>{4, 7, 9, 2}) == std::vector<int32_t>{4, 7, 9, 2});
  CHECK(verify_greedy(drafts, std::vector<int32_t>{4, 8, 9, 2}) == std::vector<int32_t>{4, 8});
  CHECK(verify_greedy(drafts, std::vector<int32_t>{5, 7, 9, 2}) == std::vector<int32_t>{5});
  CHECK(verify_greedy({}, std::vector<int32_t>{3}) == std::vector<int32_t>{3});
}

// The tokens rejection sampling emits must be distributed as the target's: the
// first as p0, the second (when the first draft was accepted) as p1. In this
// test the target's rows do not depend on the context, so p1 is also the
// conditional the second token must follow. 12 df at p = 1e-6: 44.6; a fixed
// seed keeps the test deterministic.
TEST_CASE("verify: rejection sampling reproduces the target's distribution (chi-square)") {
  constexpr size_t V = 7;
  constexpr int kTrials = 120000;
  std::mt19937 rng(2024);
  for (const bool model_draft : {false, true}) {
    CAPTURE(model_draft);
    const std::vector<float> p0 = random_dist(rng, V, /*with_zero=*/true);
    const std::vector<float> p1 = random_dist(rng, V, false);
    const std::vector<float> p2 = random_dist(rng, V, false);
    const std::vector<float> q0 = random_dist(rng, V, false);  // puts mass where p0 has none
    const std::vector<float> q1 = random_dist(rng, V, false);
    std::vector<float> p(p0);
    p.insert(p.end(), p1.begin(), p1.end());
    p.insert(p.end(), p2.begin(), p2.end());
    std::vector<float> q(q0);
    q.insert(q.end(), q1.begin(), q1.end());
    SamplingParams sp;
    sp.temperature = 1.0f;
    sp.seed = 77;
    Sampler sampler(sp);
    std::vector<float> scratch;
    std::vector<int> first(V, 0), second(V, 0);
    int n_second = 0, accepted = 0;
    // A point-mass proposer always guesses token 2 then token 5; a draft
    // model samples its guesses from q.
    std::discrete_distribution<int> d0(q0.begin(), q0.end()), d1(q1.begin(), q1.end());
    std::mt19937 draft_rng(5);
    for (int t = 0; t < kTrials; ++t) {
      std::vector<int32_t> drafts{2, 5};
      if (model_draft) drafts = {d0(draft_rng), d1(draft_rng)};
      auto out = verify_sampled(drafts, p, model_draft ? std::span<const float>(q) : std::span<const float>(),
                                V, sampler, scratch);
      REQUIRE(!out.empty());
      REQUIRE(out.size() <= 3);
      accepted += static_cast<int>(out.size()) - 1;
      ++first[static_cast<size_t>(out[0])];
      if (out.size() >= 2) {
        ++second[static_cast<size_t>(out[1])];
        ++n_second;
      }
    }
    CHECK(chi_square(first, p0, kTrials) < 44.6);
    REQUIRE(n_second > 1000);
    CHECK(chi_square(second, p1, n_second) < 44.6);
    CHECK(accepted > 0);
  }
}

// Tree: root children 4 (node 0) and 5 (node 2); node 0's children 7 (node 1)
// and 8 (node 3); node 2's child 9 (node 4).
DraftTree small_tree() {
  DraftTree t;
  t.tokens = {4, 7, 5, 8, 9};
  t.parents = {-1, 0, -1, 0, 2};
  REQUIRE(t.check().empty());
  return t;
}

TEST_CASE("verify: greedy over a draft tree walks the argmax children") {
  const DraftTree tree = small_tree();
  std::vector<int32_t> path;
  // Rows: root, node 0..4 (feed index = node + 1).
  CHECK(verify_tree_greedy(tree, std::vector<int32_t>{4, 7, 1, 1, 1, 1}, path) == std::vector<int32_t>{4, 7, 1});
  CHECK(path == std::vector<int32_t>{0, 1});
  CHECK(verify_tree_greedy(tree, std::vector<int32_t>{4, 8, 1, 1, 3, 1}, path) == std::vector<int32_t>{4, 8, 3});
  CHECK(path == std::vector<int32_t>{0, 3});
  // The first guess (4) is wrong, the second (5) right: the step still gains.
  CHECK(verify_tree_greedy(tree, std::vector<int32_t>{5, 1, 1, 9, 1, 6}, path) == std::vector<int32_t>{5, 9, 6});
  CHECK(path == std::vector<int32_t>{2, 4});
  CHECK(verify_tree_greedy(tree, std::vector<int32_t>{6, 1, 1, 1, 1, 1}, path) == std::vector<int32_t>{6});
  CHECK(path.empty());
  // A chain tree is plain verify.
  const DraftTree chain = DraftTree::chain({4, 7, 9});
  const std::vector<int32_t> argmax{4, 7, 2, 3};
  CHECK(verify_tree_greedy(chain, argmax, path) == verify_greedy(chain.tokens, argmax));
}

// Each emitted token must follow the target's distribution whatever the tree:
// the first as p0 (the root's row); the second, given the first was node 0's
// token, as node 0's row. Rows here do not depend on the context except
// through the tree, so the conditional is the row itself.
TEST_CASE("verify: rejection sampling over a draft tree reproduces the target's distribution (chi-square)") {
  constexpr size_t V = 7;
  constexpr int kTrials = 120000;
  std::mt19937 rng(99);
  DraftTree tree;
  tree.tokens = {2, 6, 5, 3, 1};
  tree.parents = {-1, 0, -1, 0, -1};  // three guesses at the first token, two at the second
  REQUIRE(tree.check().empty());
  std::vector<std::vector<float>> rows;
  for (size_t r = 0; r <= tree.size(); ++r) rows.push_back(random_dist(rng, V, /*with_zero=*/r == 0));
  std::vector<float> p;
  for (const auto& r : rows) p.insert(p.end(), r.begin(), r.end());
  SamplingParams sp;
  sp.temperature = 1.0f;
  sp.seed = 5;
  Sampler sampler(sp);
  std::vector<float> scratch;
  std::vector<int32_t> path;
  std::vector<int> first(V, 0), second(V, 0);
  int n_second = 0, two_level = 0;
  for (int t = 0; t < kTrials; ++t) {
    auto out = verify_tree_sampled(tree, p, V, sampler, scratch, path);
    REQUIRE(out.size() == path.size() + 1);
    ++first[static_cast<size_t>(out[0])];
    if (out[0] == 2) {  // node 0 accepted: the next token is drawn against its row
      REQUIRE(out.size() >= 2);
      ++second[static_cast<size_t>(out[1])];
      ++n_second;
      if (out.size() == 3) ++two_level;
    }
  }
  CHECK(chi_square(first, rows[0], kTrials) < 44.6);
  REQUIRE(n_second > 1000);
  CHECK(chi_square(second, rows[1], n_second) < 44.6);
  CHECK(two_level > 0);
}

TEST_CASE("verify: a draft the target gives all its mass is always accepted") {
  constexpr size_t V = 4;
  std::vector<float> p{0, 1, 0, 0, 0, 0, 1, 0, 0.25f, 0.25f, 0.25f, 0.25f};
  SamplingParams sp;
  sp.temperature = 0.7f;
  Sampler sampler(sp);
  std::vector<float> scratch;
  for (int t = 0; t < 100; ++t) {
    auto out = verify_sampled(std::vector<int32_t>{1, 2}, p, {}, V, sampler, scratch);
    REQUIRE(out.size() == 3);
    CHECK(out[0] == 1);
    CHECK(out[1] == 2);
  }
  // ...and one it gives no mass never is.
  for (int t = 0; t < 100; ++t) {
    auto out = verify_sampled(std::vector<int32_t>{0}, std::span<const float>(p).first(8), {}, V, sampler, scratch);
    REQUIRE(out.size() == 1);
    CHECK(out[0] == 1);
  }
}

TEST_CASE("sampler: probabilities are the distribution sample() draws from") {
  SamplingParams sp;
  sp.temperature = 0.8f;
  sp.top_k = 3;
  sp.top_p = 0.9f;
  Sampler s(sp);
  const std::vector<float> logits{1.0f, 3.0f, 2.5f, -1.0f, 2.9f};
  std::vector<float> probs;
  s.probabilities(logits, probs);
  double total = 0;
  for (float x : probs) total += x;
  CHECK(total == doctest::Approx(1.0));
  CHECK(probs[0] == 0.0f);  // outside top-k
  CHECK(probs[3] == 0.0f);
  CHECK(probs[1] > probs[4]);
  std::vector<int> counts(logits.size(), 0);
  for (int t = 0; t < 20000; ++t) ++counts[static_cast<size_t>(s.sample(logits))];
  CHECK(chi_square(counts, probs, 20000) < 30.0);
  SamplingParams g;
  Sampler greedy(g);
  greedy.probabilities(logits, probs);
  CHECK(probs[1] == 1.0f);
}

}  // namespace ghostd::runtime
