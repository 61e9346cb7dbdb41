#include "runtime/speculative/prompt_lookup.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

namespace ghostd::runtime {
namespace {

struct Case {
  const char* name;
  std::vector<int32_t> tokens;
  PromptLookupConfig config;
  std::vector<int32_t> expected;
};

TEST_CASE("prompt_lookup_draft") {
  const std::vector<Case> cases = {
      {"no repetition", {1, 2, 3, 4, 5}, {}, {}},
      {"bigram match proposes what followed", {7, 8, 9, 10, 11, 12, 7, 8}, {}, {9, 10, 11, 12}},
      {"capped by max_draft", {7, 8, 9, 10, 11, 12, 7, 8}, {4, 2, 2}, {9, 10}},
      {"most recent occurrence wins", {1, 2, 3, 1, 2, 4, 1, 2}, {}, {4, 1, 2}},
      {"longest n-gram wins over a more recent shorter one",
       {5, 1, 2, 3, 9, 2, 3, 8, 5, 1, 2, 3},
       {4, 2, 4},
       {9, 2, 3, 8}},
      {"unigram ignored by default", {4, 1, 5, 6, 1}, {}, {}},
      {"unigram when allowed", {4, 1, 5, 6, 1}, {4, 1, 4}, {5, 6, 1}},
      {"periodic text continues itself", {3, 4, 3, 4, 3, 4}, {4, 2, 3}, {3, 4}},
      {"too short", {1}, {}, {}},
      {"empty", {}, {}, {}},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    CHECK(prompt_lookup_draft(c.tokens, c.config) == c.expected);
  }
}

using Tokens = std::vector<int32_t>;

// [1 2] thrice before the end, followed by 8 0 1, 5 7 0 and 5 6 0.
const Tokens kThree = {1, 2, 5, 6, 0, 1, 2, 5, 7, 0, 1, 2, 8, 0, 1, 2};
constexpr PromptLookupConfig kBigrams = {2, 2, 3};

TEST_CASE("prompt_lookup_tree: merges the continuations of every occurrence") {
  const DraftTree t = prompt_lookup_tree(kThree, kBigrams, 63);
  CHECK(t.check().empty());
  // The most recent continuation as the chain, then 5 7 0, then 6 0 under 5.
  CHECK(t.tokens == Tokens{8, 0, 1, 5, 7, 0, 6, 0});
  CHECK(t.parents == Tokens{-1, 0, 1, -1, 3, 4, 3, 6});
  REQUIRE(t.probs.size() == 8);
  const std::vector<double> probs = {1.0 / 3, 1, 1, 2.0 / 3, 0.5, 1, 0.5, 1};
  for (size_t i = 0; i < probs.size(); ++i) {
    CAPTURE(i);
    CHECK(t.probs[i] == doctest::Approx(probs[i]));
  }
  CHECK(Tokens(t.tokens.begin(), t.tokens.begin() + 3) == prompt_lookup_draft(kThree, kBigrams));
}

TEST_CASE("prompt_lookup_tree: max_nodes keeps the chain and the earliest branches") {
  DraftTree t = prompt_lookup_tree(kThree, kBigrams, 5);
  CHECK(t.tokens == Tokens{8, 0, 1, 5, 7});
  CHECK(t.parents == Tokens{-1, 0, 1, -1, 3});
  // The third occurrence still counts through 5, where it found no room.
  CHECK(t.probs[3] == doctest::Approx(2.0 / 3));
  CHECK(t.probs[4] == doctest::Approx(0.5));
  for (int n = 1; n <= 3; ++n) {
    CAPTURE(n);
    t = prompt_lookup_tree(kThree, kBigrams, n);
    CHECK(t.is_chain());
    const Tokens chain = prompt_lookup_draft(kThree, kBigrams);
    CHECK(t.tokens == Tokens(chain.begin(), chain.begin() + n));
  }
  CHECK(prompt_lookup_tree(kThree, kBigrams, 0).empty());
  // Longer drafts: 4 levels at most, 63 nodes at most.
  const PromptLookupConfig deep = {2, 2, 100};
  const DraftTree d = prompt_lookup_tree(kThree, deep, 1000);
  CHECK(d.check().empty());
  CHECK(d.size() <= static_cast<size_t>(kMaxDraftTreeNodes));
  for (const int depth : prompt_lookup_tree(kThree, {2, 2, 4}, 63).depths()) CHECK(depth <= 4);
}

TEST_CASE("prompt_lookup_tree: a continuation cut by the end passes on to no child") {
  // [3 4] at 2 (then 3 4, the end) and at 0 (then 3 4 3).
  const DraftTree t = prompt_lookup_tree(Tokens{3, 4, 3, 4, 3, 4}, {2, 2, 3}, 63);
  CHECK(t.tokens == Tokens{3, 4, 3});
  CHECK(t.is_chain());
  REQUIRE(t.probs.size() == 3);
  CHECK(t.probs[0] == doctest::Approx(1));
  CHECK(t.probs[1] == doctest::Approx(1));
  CHECK(t.probs[2] == doctest::Approx(0.5));
}

TEST_CASE("prompt_lookup_tree: the most recent occurrences only, the longest n-gram only") {
  // [1 2 k] for k = 10..21, then [1 2]: twelve occurrences, the last eight kept.
  Tokens tokens;
  for (int32_t k = 10; k < 22; ++k) tokens.insert(tokens.end(), {1, 2, k});
  tokens.insert(tokens.end(), {1, 2});
  const DraftTree t = prompt_lookup_tree(tokens, {2, 2, 1}, 63);
  CHECK(t.tokens == Tokens{21, 20, 19, 18, 17, 16, 15, 14});
  for (size_t i = 0; i < t.size(); ++i) {
    CHECK(t.parents[i] == -1);
    CHECK(t.probs[i] == doctest::Approx(1.0 / kPromptLookupMaxOccurrences));
  }
  // The 4-gram match wins over more recent shorter ones.
  const Tokens mixed = {5, 1, 2, 3, 9, 2, 3, 8, 5, 1, 2, 3};
  const DraftTree m = prompt_lookup_tree(mixed, {4, 2, 4}, 63);
  CHECK(m.tokens == Tokens{9, 2, 3, 8});
  CHECK(m.is_chain());
}

TEST_CASE("prompt_lookup_tree: no match proposes nothing") {
  CHECK(prompt_lookup_tree(Tokens{1, 2, 3, 4, 5}, {}, 63).empty());
  CHECK(prompt_lookup_tree(Tokens{4, 1, 5, 6, 1}, {}, 63).empty());  // unigram below min_ngram
  CHECK(prompt_lookup_tree(Tokens{1}, {}, 63).empty());
  CHECK(prompt_lookup_tree(Tokens{}, {}, 63).empty());
  CHECK(prompt_lookup_tree(kThree, {2, 2, 0}, 63).empty());
}

TEST_CASE("prompt_lookup_tree: every path continues an occurrence, in merge order") {
  std::mt19937 rng(5);
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  int branched = 0;  // rounds that exercised each part
  int full = 0;
  for (int round = 0; round < 500; ++round) {
    CAPTURE(round);
    Tokens tokens(static_cast<size_t>(uniform(0, 60)));
    for (int32_t& t : tokens) t = uniform(0, 2);
    PromptLookupConfig config;
    config.max_ngram = uniform(1, 5);
    config.min_ngram = uniform(1, config.max_ngram);
    config.max_draft = uniform(1, 8);
    const int max_nodes = uniform(1, 63);
    CAPTURE(config.max_ngram);
    CAPTURE(config.min_ngram);
    CAPTURE(config.max_draft);
    CAPTURE(max_nodes);
    const DraftTree t = prompt_lookup_tree(tokens, config, max_nodes);
    INFO(t.check());
    REQUIRE(t.check().empty());
    CHECK(t.size() <= static_cast<size_t>(max_nodes));

    // The continuations by brute force: the longest n with an earlier
    // occurrence, its eight most recent.
    std::vector<Tokens> continuations;
    const int len = static_cast<int>(tokens.size());
    for (int n = std::min(config.max_ngram, len - 1);
         n >= config.min_ngram && continuations.empty(); --n) {
      for (int start = len - n - 1; start >= 0; --start) {
        if (static_cast<int>(continuations.size()) == kPromptLookupMaxOccurrences) break;
        if (!std::equal(tokens.end() - n, tokens.end(), tokens.begin() + start)) continue;
        const int from = start + n;
        continuations.emplace_back(tokens.begin() + from,
                                   tokens.begin() + std::min(len, from + config.max_draft));
      }
    }
    const Tokens chain = prompt_lookup_draft(tokens, config);
    if (continuations.empty()) {
      CHECK(chain.empty());
      CHECK(t.empty());
      continue;
    }
    CHECK(chain == continuations.front());

    // Every distinct prefix, in order of first appearance: the nodes' paths.
    std::vector<Tokens> expected;
    for (const Tokens& c : continuations) {
      for (size_t k = 1; k <= c.size(); ++k) {
        Tokens prefix(c.begin(), c.begin() + static_cast<std::ptrdiff_t>(k));
        if (std::find(expected.begin(), expected.end(), prefix) == expected.end())
          expected.push_back(prefix);
      }
    }
    if (expected.size() > static_cast<size_t>(max_nodes))
      expected.resize(static_cast<size_t>(max_nodes));
    REQUIRE(t.size() == expected.size());
    branched += !t.is_chain();
    full += t.size() == static_cast<size_t>(max_nodes) && !t.is_chain();
    auto through = [&](const Tokens& path) {
      return std::count_if(continuations.begin(), continuations.end(), [&](const Tokens& c) {
        return c.size() >= path.size() && std::equal(path.begin(), path.end(), c.begin());
      });
    };
    std::vector<Tokens> paths(t.size());
    for (size_t i = 0; i < t.size(); ++i) {
      CAPTURE(i);
      const int32_t parent = t.parents[i];
      const Tokens above = parent < 0 ? Tokens{} : paths[static_cast<size_t>(parent)];
      paths[i] = above;
      paths[i].push_back(t.tokens[i]);
      CHECK(paths[i] == expected[i]);
      CHECK(t.probs[i] == doctest::Approx(static_cast<double>(through(paths[i])) /
                                          static_cast<double>(through(above))));
    }
    for (size_t i = 0; i < std::min(chain.size(), t.size()); ++i) {
      CHECK(t.tokens[i] == chain[i]);
      CHECK(t.parents[i] == static_cast<int32_t>(i) - 1);
    }
  }
  CHECK(branched > 100);
  CHECK(full > 20);
}

}  // namespace
}  // namespace ghostd::runtime
