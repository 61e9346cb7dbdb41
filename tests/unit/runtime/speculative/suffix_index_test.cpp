#include "runtime/speculative/suffix_index.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace ghostd::runtime {
namespace {

using Tokens = std::vector<int32_t>;

void check_valid(const SuffixIndex& index) {
  const Status status = index.validate();
  INFO(status.message());
  REQUIRE(status.ok());
}

TEST_CASE("suffix_index: proposes the continuation of a repeated pattern") {
  SuffixIndex index;
  index.update_document("a", Tokens{10, 1, 2, 3, 4, 5, 6, 7, 8});
  const SuffixProposal p = index.propose("a", Tokens{20, 21, 1, 2, 3}, 8);
  // The reference ends after 8: nothing follows, so the draft stops there.
  CHECK(p.tokens == Tokens{4, 5, 6, 7, 8});
  CHECK(p.score == doctest::Approx(5.0));
  CHECK(p.match_len == 3);
  CHECK(index.propose("a", Tokens{20, 21, 1, 2, 3}, 2).tokens == Tokens{4, 5});
  // A single matching token is below min_match.
  CHECK(index.propose("a", Tokens{20, 21, 3}, 8).tokens.empty());
  check_valid(index);
}

TEST_CASE("suffix_index: prefers the more frequent continuation") {
  SuffixIndex index;
  index.update_document("a", Tokens{1, 2, 7, 8, 0, 1, 2, 5, 6, 0, 1, 2, 5, 6});
  const SuffixProposal p = index.propose("a", Tokens{9, 1, 2}, 2);
  CHECK(p.tokens == Tokens{5, 6});
  // [1 2] occurs 3 times, [1 2 5] and [1 2 5 6] twice: 2/3 + 2/3.
  CHECK(p.score == doctest::Approx(4.0 / 3.0));
  CHECK(p.match_len == 2);
}

TEST_CASE("suffix_index: stops at low confidence") {
  const Tokens prompt = {1, 2, 3, 4, 0, 1, 2, 3, 5, 0, 1, 2, 3, 6, 0, 1, 2, 7, 0, 1, 2, 8, 0};
  // [1 2] occurs 5 times, 3 of them followed by 3; after [1 2 3] come 4, 5, 6 once each.
  SuffixIndexConfig config;
  config.min_token_prob = 0.5f;
  SuffixIndex strict(config);
  strict.update_document("a", prompt);
  SuffixProposal p = strict.propose("a", Tokens{9, 1, 2}, 8);
  CHECK(p.tokens == Tokens{3});
  CHECK(p.score == doctest::Approx(0.6));

  SuffixIndex
      lenient;  // min_token_prob 0.1: 0.6 x 1/3 = 0.2 still passes; ties go to the lower token
  lenient.update_document("a", prompt);
  p = lenient.propose("a", Tokens{9, 1, 2}, 3);
  CHECK(p.tokens == Tokens{3, 4, 0});
  CHECK(p.score == doctest::Approx(0.6 + 0.2 + 0.2));
}

TEST_CASE("suffix_index: the best-scoring match wins when a long one has no room left") {
  SuffixIndexConfig config;
  config.max_depth = 4;
  SuffixIndex index(config);
  index.update_document("a", Tokens{1, 2, 3, 4, 5, 6, 7});
  // [1 2 3 4] matches at the depth limit and cannot extend; [3 4] extends by 2.
  const SuffixProposal p = index.propose("a", Tokens{1, 2, 3, 4}, 8);
  CHECK(p.tokens == Tokens{5, 6});
  CHECK(p.match_len == 2);
}

TEST_CASE("suffix_index: completions of the document are used") {
  SuffixIndexConfig config;
  config.max_completions = 2;
  SuffixIndex index(config);
  index.update_document("a", Tokens{40, 41, 42});
  index.add_completion("a", Tokens{1, 2, 3, 4, 5});
  CHECK(index.propose("a", Tokens{7, 1, 2}, 8).tokens == Tokens{3, 4, 5});
  // Only the last max_completions are kept.
  index.add_completion("a", Tokens{30, 31});
  index.add_completion("a", Tokens{32, 33});
  CHECK(index.propose("a", Tokens{7, 1, 2}, 8).tokens.empty());
  CHECK(index.propose("a", Tokens{7, 30}, 8).tokens.empty());  // one token: below min_match
  check_valid(index);
}

TEST_CASE("suffix_index: other documents answer only through the global trie") {
  SuffixIndex index;
  index.update_document("a", Tokens{10, 11, 12, 13, 14});
  index.update_document("b", Tokens{10, 11, 20, 21});
  // Globally [10 11] is followed by 12 or 20 equally (12 would win the tie);
  // b's own trie answers first.
  CHECK(index.propose("b", Tokens{5, 10, 11}, 8).tokens == Tokens{20, 21});
  CHECK(index.propose("a", Tokens{5, 10, 11}, 8).tokens == Tokens{12, 13, 14});
  // b has no [12 13]: the global trie answers.
  SuffixProposal p = index.propose("b", Tokens{5, 12, 13}, 8);
  CHECK(p.tokens == Tokens{14});
  CHECK(p.score == doctest::Approx(1.0));
  CHECK(index.propose("unknown", Tokens{5, 12, 13}, 8).tokens == Tokens{14});
  // b's own match ends its prompt: nothing follows anywhere.
  CHECK(index.propose("b", Tokens{20, 21}, 8).tokens.empty());
  index.remove_document("b");
  CHECK(index.propose("b", Tokens{5, 10, 11}, 8).tokens == Tokens{12, 13, 14});
  check_valid(index);
}

TEST_CASE("suffix_index: empty inputs and max_tokens 0") {
  SuffixIndex index;
  CHECK(index.propose("a", Tokens{1, 2}, 4).tokens.empty());
  index.update_document("a", {});
  index.add_completion("a", {});
  index.add_completion("new", {});
  CHECK(index.num_documents() == 1);
  CHECK(index.num_nodes() == 0);
  index.remove_document("never seen");
  index.update_document("a", Tokens{1, 2, 3, 1, 2, 3});
  CHECK(index.propose("a", {}, 4).tokens.empty());
  CHECK(index.propose("a", Tokens{9, 1, 2}, 0).tokens.empty());
  CHECK(index.propose("a", Tokens{9, 1, 2}, -1).tokens.empty());
  CHECK(index.propose("a", Tokens{9, 1, 2}, 1).tokens == Tokens{3});
  index.update_document("a", {});  // emptied prompt frees its nodes
  CHECK(index.num_nodes() == 0);
  check_valid(index);
}

TEST_CASE("suffix_index: memory is bounded and freed") {
  SuffixIndexConfig config;
  config.max_depth = 4;
  config.max_tokens_per_document = 10;
  SuffixIndex index(config);
  Tokens prompt;
  for (int32_t t = 1; t <= 20; ++t) prompt.push_back(t);
  index.update_document("a", prompt);
  // Only the last 10 tokens (11..20) are indexed.
  CHECK(index.propose("a", Tokens{1, 2}, 4).tokens.empty());
  CHECK(index.propose("a", Tokens{11, 12}, 2).tokens == Tokens{13, 14});
  // 10 windows with distinct first tokens: a leaf each, in the document's trie and the global one.
  CHECK(index.num_nodes() == 2 * 10);
  CHECK(index.document_paths("a").size() == 7 * 4 + 3 + 2 + 1);

  index.update_document("a", Tokens{1, 2, 3, 4, 5, 6});
  index.add_completion("a", Tokens{30, 31, 32});
  CHECK(index.propose("a", Tokens{30, 31}, 1).tokens == Tokens{32});
  index.add_completion("a", Tokens{40, 41, 42});  // 6 + 3 + 3 > 10: the oldest goes
  CHECK(index.propose("a", Tokens{30, 31}, 1).tokens.empty());
  CHECK(index.propose("a", Tokens{40, 41}, 1).tokens == Tokens{42});
  check_valid(index);

  index.update_document("b", prompt);
  index.add_completion("c", prompt);
  CHECK(index.num_nodes() > 0);
  index.remove_document("a");
  index.remove_document("b");
  check_valid(index);
  index.remove_document("c");
  CHECK(index.num_documents() == 0);
  CHECK(index.num_nodes() == 0);
  check_valid(index);
}

TEST_CASE("suffix_index: LRU eviction keeps the global counts consistent") {
  SuffixIndexConfig config;
  config.max_documents = 2;
  SuffixIndex index(config);
  index.update_document("a", Tokens{1, 2, 3, 4});
  index.update_document("b", Tokens{5, 6, 7, 8});
  index.update_document("a", Tokens{1, 2, 3, 4, 9});  // a is now the most recent
  index.update_document("c", Tokens{1, 2, 3, 5});     // evicts b
  CHECK(index.num_documents() == 2);
  CHECK(index.document_paths("b").empty());
  CHECK(index.propose("x", Tokens{5, 6}, 4).tokens.empty());
  check_valid(index);

  SuffixIndex fresh(config);
  fresh.update_document("a", Tokens{1, 2, 3, 4, 9});
  fresh.update_document("c", Tokens{1, 2, 3, 5});
  CHECK(index.global_paths() == fresh.global_paths());
  CHECK(index.num_nodes() == fresh.num_nodes());

  index.add_completion("d", Tokens{1, 2});  // a completion also creates and touches: evicts a
  CHECK(index.document_paths("a").empty());
  CHECK(!index.document_paths("c").empty());
  check_valid(index);
}

// ---- randomized: incremental updates equal a trie built from scratch --------

// Mirrors the documented retention rules (truncation, completion history, LRU).
struct Model {
  struct Doc {
    Tokens prompt;
    std::deque<Tokens> completions;
  };
  SuffixIndexConfig config;
  std::list<std::string> lru;  // most recent first
  std::map<std::string, Doc> docs;

  Doc& touch(const std::string& key) {
    lru.remove(key);
    lru.push_front(key);
    Doc& doc = docs[key];
    while (lru.size() > static_cast<size_t>(config.max_documents)) {
      docs.erase(lru.back());
      lru.pop_back();
    }
    return doc;
  }
  Tokens truncated(const Tokens& tokens) const {
    const size_t n = std::min(tokens.size(), config.max_tokens_per_document);
    return Tokens(tokens.end() - static_cast<std::ptrdiff_t>(n), tokens.end());
  }
  void budget(Doc& doc) {
    auto held = [&] {
      size_t n = doc.prompt.size();
      for (const Tokens& c : doc.completions) n += c.size();
      return n;
    };
    while (!doc.completions.empty() && held() > config.max_tokens_per_document) {
      doc.completions.pop_front();
    }
  }
  void update(const std::string& key, const Tokens& tokens) {
    Doc& doc = touch(key);
    doc.prompt = truncated(tokens);
    budget(doc);
  }
  void complete(const std::string& key, const Tokens& tokens) {
    if (tokens.empty()) return;
    Doc& doc = touch(key);
    doc.completions.push_back(truncated(tokens));
    while (doc.completions.size() > static_cast<size_t>(config.max_completions)) {
      doc.completions.pop_front();
    }
    budget(doc);
  }
  void remove(const std::string& key) {
    lru.remove(key);
    docs.erase(key);
  }

  // Every prefix of every window, counted: the trie's content by definition.
  void count_paths(const Tokens& seq, std::map<Tokens, uint32_t>& out) const {
    const size_t depth = static_cast<size_t>(config.max_depth);
    for (size_t i = 0; i < seq.size(); ++i) {
      for (size_t len = 1; len <= std::min(depth, seq.size() - i); ++len) {
        ++out[Tokens(seq.begin() + static_cast<std::ptrdiff_t>(i),
                     seq.begin() + static_cast<std::ptrdiff_t>(i + len))];
      }
    }
  }
  void count_doc(const Doc& doc, std::map<Tokens, uint32_t>& out) const {
    count_paths(doc.prompt, out);
    for (const Tokens& c : doc.completions) count_paths(c, out);
  }
  static SuffixIndex::PathCounts flatten(const std::map<Tokens, uint32_t>& paths) {
    // Lexicographic order of paths is the trie's depth-first token order.
    return SuffixIndex::PathCounts(paths.begin(), paths.end());
  }
};

void check_against_scratch(const SuffixIndex& index, const Model& model) {
  check_valid(index);
  REQUIRE(index.num_documents() == model.docs.size());
  SuffixIndex fresh(model.config);
  for (auto it = model.lru.rbegin(); it != model.lru.rend(); ++it) {
    const Model::Doc& doc = model.docs.at(*it);
    fresh.update_document(*it, doc.prompt);
    for (const Tokens& c : doc.completions) fresh.add_completion(*it, c);
  }
  std::map<Tokens, uint32_t> global;
  // No structured bindings: clang 14 cannot capture them in CAPTURE's lambda.
  for (const auto& entry : model.docs) {
    const std::string& key = entry.first;
    const Model::Doc& doc = entry.second;
    std::map<Tokens, uint32_t> own;
    model.count_doc(doc, own);
    model.count_doc(doc, global);
    const SuffixIndex::PathCounts got = index.document_paths(key);
    CAPTURE(key);
    REQUIRE(got == Model::flatten(own));
    REQUIRE(got == fresh.document_paths(key));
  }
  REQUIRE(index.global_paths() == Model::flatten(global));
  REQUIRE(index.num_nodes() == fresh.num_nodes());
}

TEST_CASE("suffix_index: random edits leave the tries equal to a rebuild from scratch") {
  for (const int depth : {1, 2, 5, 32}) {
    CAPTURE(depth);
    Model model;
    model.config.max_depth = depth;
    model.config.max_documents = 3;
    model.config.max_completions = 3;
    model.config.max_tokens_per_document = 48;
    SuffixIndex index(model.config);
    std::mt19937 rng(1234u + static_cast<unsigned>(depth));
    auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    auto random_tokens = [&](int n) {
      Tokens t(static_cast<size_t>(n));
      for (int32_t& x : t) x = uniform(0, 4);  // 5 tokens: many shared paths
      return t;
    };
    const std::vector<std::string> keys = {"a", "b", "c", "d"};
    for (int step = 0; step < 600; ++step) {
      CAPTURE(step);
      const std::string& key = keys[static_cast<size_t>(uniform(0, step < 300 ? 1 : 3))];
      Tokens prompt = model.docs.count(key) ? model.docs[key].prompt : Tokens{};
      const int pos = uniform(0, static_cast<int>(prompt.size()));
      const auto at = prompt.begin() + pos;
      const int run_len = std::min(uniform(1, 4), static_cast<int>(prompt.size()) - pos);
      switch (uniform(0, 9)) {
        case 0:
        case 1: {  // insert a run
          const Tokens run = random_tokens(uniform(1, 4));
          prompt.insert(at, run.begin(), run.end());
          break;
        }
        case 2:  // delete a run
          prompt.erase(at, at + run_len);
          break;
        case 3:  // replace a run
          for (int i = 0; i < run_len; ++i) prompt[static_cast<size_t>(pos + i)] = uniform(0, 4);
          break;
        case 4:  // type at the end, sometimes past the token budget
          prompt.push_back(uniform(0, 4));
          break;
        case 5:  // a different file
          prompt = random_tokens(uniform(0, 60));
          break;
        case 6:  // unchanged, or two edits at once (a run deleted, a token typed later)
          if (uniform(0, 1) == 0 && prompt.size() > 8) {
            const auto cut = static_cast<std::ptrdiff_t>(uniform(0, 3));
            prompt.erase(prompt.begin() + cut, prompt.begin() + cut + uniform(1, 4));
            prompt.insert(prompt.end() - uniform(0, 3), static_cast<int32_t>(uniform(0, 4)));
          }
          break;
        case 7:
        case 8: {
          const Tokens completion = random_tokens(uniform(0, 12));
          model.complete(key, completion);
          index.add_completion(key, completion);
          check_against_scratch(index, model);
          continue;
        }
        default:
          if (uniform(0, 3) == 0) {
            model.remove(key);
            index.remove_document(key);
            check_against_scratch(index, model);
            continue;
          }
          prompt.insert(prompt.begin(), static_cast<int32_t>(uniform(0, 4)));  // edit at the start
      }
      model.update(key, prompt);
      index.update_document(key, prompt);
      check_against_scratch(index, model);
    }
    for (const std::string& key : keys) index.remove_document(key);
    CHECK(index.num_nodes() == 0);
  }
}

TEST_CASE("suffix_index: removing documents subtracts exactly their windows") {
  // Heavily shared content (3 tokens), removed in random order: the global trie
  // must fold and prune exactly as a rebuild over the remaining documents.
  for (unsigned seed = 0; seed < 20; ++seed) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    auto random_tokens = [&](int n) {
      Tokens t(static_cast<size_t>(n));
      for (int32_t& x : t) x = uniform(0, 2);
      return t;
    };
    Model model;
    model.config.max_depth = uniform(1, 8);
    SuffixIndex index(model.config);
    std::vector<std::string> keys;
    for (int d = 0; d < 6; ++d) {
      const std::string key = "doc" + std::to_string(d);
      keys.push_back(key);
      const Tokens prompt = random_tokens(uniform(0, 40));
      model.update(key, prompt);
      index.update_document(key, prompt);
      for (int c = uniform(0, 3); c > 0; --c) {
        const Tokens completion = random_tokens(uniform(1, 10));
        model.complete(key, completion);
        index.add_completion(key, completion);
      }
    }
    check_against_scratch(index, model);
    std::shuffle(keys.begin(), keys.end(), rng);
    for (const std::string& key : keys) {
      model.remove(key);
      index.remove_document(key);
      check_against_scratch(index, model);
    }
    CHECK(index.num_nodes() == 0);
  }
}

TEST_CASE("suffix_index: two edits at once re-index only around them") {
  // The prompt builder drops lines from the prefix window's front while the
  // user types further down: a deleted run and a keystroke in one update.
  std::mt19937 rng(11);
  auto token = [&] { return std::uniform_int_distribution<int32_t>(0, 4)(rng); };
  SuffixIndexConfig config;
  config.max_depth = 8;
  SuffixIndex index(config);
  Tokens prompt(2000);
  for (int32_t& t : prompt) t = token();
  index.update_document("a", prompt);
  CHECK(index.last_reindexed() == 2000);
  for (int round = 0; round < 50; ++round) {
    CAPTURE(round);
    Tokens next = prompt;
    const bool deleted = round % 2 == 0;
    if (deleted) {
      next.erase(next.begin() + 100, next.begin() + 140);  // lines cut after the context
    } else {
      for (int i = 0; i < 40; ++i) next.insert(next.begin() + 100, token());  // a paste
    }
    next.insert(next.end() - 300, token());  // the keystroke
    index.update_document("a", next);
    // Around the cut: 40 old or new windows + max_depth - 1 before it; around
    // the keystroke: 1 new + 2 x (max_depth - 1) windows overlapping it.
    CHECK(index.last_reindexed() <= 40 + 7 + 1 + 2 * 7 + 2 * 8);
    prompt = next;
  }
  SuffixIndex fresh(config);
  fresh.update_document("a", prompt);
  CHECK(index.document_paths("a") == fresh.document_paths("a"));
  CHECK(index.global_paths() == fresh.global_paths());
  check_valid(index);
}

TEST_CASE("suffix_index: one-token edits in a long prompt match a rebuild") {
  std::mt19937 rng(7);
  auto token = [&] { return std::uniform_int_distribution<int32_t>(0, 4)(rng); };
  Tokens prompt(3000);
  for (int32_t& t : prompt) t = token();
  SuffixIndex index;
  index.update_document("a", prompt);
  for (int i = 0; i < 200; ++i) {
    const auto pos =
        static_cast<std::ptrdiff_t>(std::uniform_int_distribution<size_t>(0, prompt.size())(rng));
    if (i % 3 == 0 && pos < static_cast<std::ptrdiff_t>(prompt.size())) {
      prompt.erase(prompt.begin() + pos);
    } else {
      prompt.insert(prompt.begin() + pos, token());
    }
    index.update_document("a", prompt);
  }
  SuffixIndex fresh;
  fresh.update_document("a", prompt);
  CHECK(index.document_paths("a") == fresh.document_paths("a"));
  CHECK(index.global_paths() == fresh.global_paths());
  CHECK(index.num_nodes() == fresh.num_nodes());
  check_valid(index);
}

// ---- propose_tree -------------------------------------------------------------

// After [1 2 3]: 4 twice (then 7 or 8), 5 once (then 9, the end).
const Tokens kBranchy = {1, 2, 3, 4, 7, 1, 2, 3, 4, 8, 1, 2, 3, 5, 9};
const Tokens kBranchyContext = {6, 1, 2, 3};

TEST_CASE("suffix_index: propose_tree branches where the reference does") {
  SuffixIndex index;
  index.update_document("a", kBranchy);
  const SuffixTreeProposal p = index.propose_tree("a", kBranchyContext, 6, 2);
  CHECK(p.tree.check().empty());
  // The chain (propose's 4, 7: ties to the lower token), then by count, ties
  // to the earlier parent: 5 at the root, 8 under 4, 9 under 5.
  CHECK(p.tree.tokens == Tokens{4, 7, 5, 8, 9});
  CHECK(p.tree.parents == Tokens{-1, 0, -1, 0, 2});
  REQUIRE(p.tree.probs.size() == 5);
  CHECK(p.tree.probs[0] == doctest::Approx(2.0 / 3.0));
  CHECK(p.tree.probs[1] == doctest::Approx(0.5));
  CHECK(p.tree.probs[2] == doctest::Approx(1.0 / 3.0));
  CHECK(p.tree.probs[3] == doctest::Approx(0.5));
  CHECK(p.tree.probs[4] == doctest::Approx(1.0));  // inside 9's window tail
  // Path probabilities: 2/3, then 1/3 for each of the others.
  CHECK(p.score == doctest::Approx(2.0));
  CHECK(p.match_len == 3);
  CHECK(p.tree.depths() == std::vector<int>{1, 2, 1, 2, 2});

  // max_nodes cuts the best-first part.
  const SuffixTreeProposal three = index.propose_tree("a", kBranchyContext, 3, 2);
  CHECK(three.tree.tokens == Tokens{4, 7, 5});
  CHECK(three.tree.parents == Tokens{-1, 0, -1});
  CHECK(three.score == doctest::Approx(4.0 / 3.0));

  // One level deeper: 7's tail continues with 1, 8's too; 9 ends the prompt.
  const SuffixTreeProposal deeper = index.propose_tree("a", kBranchyContext, 63, 3);
  CHECK(deeper.tree.check().empty());
  CHECK(deeper.tree.tokens == Tokens{4, 7, 1, 5, 8, 9, 1});
  CHECK(deeper.tree.parents == Tokens{-1, 0, 1, -1, 0, 3, 4});
}

TEST_CASE("suffix_index: propose_tree is the chain when max_nodes allows no more") {
  SuffixIndex index;
  index.update_document("a", kBranchy);
  for (int n = 1; n <= 8; ++n) {
    CAPTURE(n);
    const SuffixProposal chain = index.propose("a", kBranchyContext, n);
    REQUIRE(static_cast<int>(chain.tokens.size()) == n);
    const SuffixTreeProposal tree = index.propose_tree("a", kBranchyContext, n, 32);
    CHECK(tree.tree.is_chain());
    CHECK(tree.tree.tokens == chain.tokens);
    CHECK(tree.score == doctest::Approx(chain.score));
    CHECK(tree.match_len == chain.match_len);
  }
  // The chain comes whole before any branch: 5 at the root ties with 7 under
  // 4 (1/3 each) and would win the tie on its own.
  const SuffixTreeProposal two = index.propose_tree("a", kBranchyContext, 2, 32);
  CHECK(two.tree.tokens == Tokens{4, 7});
}

TEST_CASE("suffix_index: propose_tree respects min_token_prob and the window depth") {
  SuffixIndexConfig config;
  config.min_token_prob = 0.5f;
  SuffixIndex strict(config);
  strict.update_document("a", kBranchy);
  // 4 (2/3) passes; everything else is 1/3 or less.
  const SuffixTreeProposal p = strict.propose_tree("a", kBranchyContext, 63, 32);
  CHECK(p.tree.tokens == Tokens{4});
  CHECK(p.score == doctest::Approx(2.0 / 3.0));

  config = {};
  config.max_depth = 5;
  SuffixIndex shallow(config);
  shallow.update_document("a", kBranchy);
  // Windows of 5: the match [1 2 3] leaves 2 levels, whatever max_depth asks,
  // so propose's choice is [2 3], which leaves 3 and scores higher.
  const SuffixTreeProposal q = shallow.propose_tree("a", kBranchyContext, 63, 10);
  CHECK(q.match_len == 2);
  CHECK(q.tree.tokens == Tokens{4, 7, 1, 5, 8, 9, 1});
  for (const int d : q.tree.depths()) CHECK(d <= 3);
}

TEST_CASE("suffix_index: propose_tree without a match proposes nothing") {
  SuffixIndex index;
  index.update_document("a", kBranchy);
  CHECK(index.propose_tree("a", Tokens{6, 7}, 8, 8).tree.empty());  // [6 7] never occurs
  CHECK(index.propose_tree("a", Tokens{6, 3}, 8, 8).tree.empty());  // below min_match
  CHECK(index.propose_tree("a", Tokens{}, 8, 8).tree.empty());
  CHECK(index.propose_tree("a", kBranchyContext, 0, 8).tree.empty());
  CHECK(index.propose_tree("a", kBranchyContext, 8, 0).tree.empty());
  const SuffixTreeProposal none = index.propose_tree("a", Tokens{6, 7}, 8, 8);
  CHECK(none.score == 0);
  CHECK(none.match_len == 0);
  // The global trie answers for another document, capped at the mask's size.
  index.update_document("b", Tokens{40, 41, 42});
  const SuffixTreeProposal global = index.propose_tree("b", kBranchyContext, 1000, 32);
  CHECK(global.tree.check().empty());
  CHECK(global.tree.tokens.size() <= static_cast<size_t>(kMaxDraftTreeNodes));
  CHECK(global.tree.tokens.front() == 4);
  CHECK(index.propose_tree("unknown", kBranchyContext, 8, 8).tree.tokens ==
        index.propose_tree("b", kBranchyContext, 8, 8).tree.tokens);
}

// Occurrences of `path` in `seq`: the count of its trie node while it fits
// in a window.
uint32_t occurrences(const Tokens& seq, const Tokens& path) {
  uint32_t n = 0;
  for (size_t i = 0; i + path.size() <= seq.size(); ++i)
    n += std::equal(path.begin(), path.end(), seq.begin() + static_cast<std::ptrdiff_t>(i));
  return n;
}

TEST_CASE("suffix_index: propose_tree paths occur in the reference, best first") {
  std::mt19937 rng(99);
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  constexpr int kVocab = 3;
  int branched = 0;  // rounds that exercised each part
  int full = 0;
  int short_of_nodes = 0;
  for (int round = 0; round < 400; ++round) {
    CAPTURE(round);
    SuffixIndexConfig config;
    config.max_depth = uniform(2, 9);
    config.min_match = uniform(1, 3);
    config.min_token_prob = std::array{0.0f, 0.1f, 0.3f}[static_cast<size_t>(uniform(0, 2))];
    SuffixIndex index(config);
    Tokens seq(static_cast<size_t>(uniform(5, 80)));
    for (int32_t& t : seq) t = uniform(0, kVocab - 1);
    index.update_document("a", seq);
    // A piece of the reference, or noise, as the context's end.
    Tokens context(static_cast<size_t>(uniform(1, 6)));
    if (uniform(0, 3) != 0) {
      const size_t start = static_cast<size_t>(uniform(0, static_cast<int>(seq.size()) - 1));
      const size_t len = std::min(context.size(), seq.size() - start);
      context.assign(seq.begin() + static_cast<std::ptrdiff_t>(start),
                     seq.begin() + static_cast<std::ptrdiff_t>(start + len));
    } else {
      for (int32_t& t : context) t = uniform(0, kVocab - 1);
    }
    const int max_nodes = uniform(1, 63);
    const int max_depth = uniform(1, 10);
    CAPTURE(config.max_depth);
    CAPTURE(max_nodes);
    CAPTURE(max_depth);
    const SuffixTreeProposal p = index.propose_tree("a", context, max_nodes, max_depth);
    const DraftTree& tree = p.tree;
    INFO(tree.check());
    REQUIRE(tree.check().empty());

    // The chain first: propose() for as many tokens as one path could hold.
    const SuffixProposal chain = index.propose("a", context, std::min(max_nodes, max_depth));
    REQUIRE(tree.size() >= chain.tokens.size());
    if (chain.tokens.empty()) {
      CHECK(tree.empty());
      continue;
    }
    CHECK(p.match_len == chain.match_len);
    for (size_t i = 0; i < chain.tokens.size(); ++i) {
      CHECK(tree.tokens[i] == chain.tokens[i]);
      CHECK(tree.parents[i] == static_cast<int32_t>(i) - 1);
    }
    CHECK(tree.size() <= static_cast<size_t>(max_nodes));

    // Every root-to-node path follows the match somewhere in the reference,
    // with its count ratio as probability.
    const Tokens match(context.end() - p.match_len, context.end());
    const int depth_limit = std::min(max_depth, config.max_depth - p.match_len);
    const double match_count = occurrences(seq, match);
    std::vector<Tokens> paths(tree.size());
    const std::vector<int> depths = tree.depths();
    double score = 0;
    uint32_t min_branch_count = UINT32_MAX;  // lowest count outside the chain
    for (size_t i = 0; i < tree.size(); ++i) {
      CAPTURE(i);
      const int32_t parent = tree.parents[i];
      const Tokens& above = parent < 0 ? match : paths[static_cast<size_t>(parent)];
      paths[i] = above;
      paths[i].push_back(tree.tokens[i]);
      const uint32_t count = occurrences(seq, paths[i]);
      REQUIRE(count > 0);
      CHECK(depths[i] <= depth_limit);
      CHECK(tree.probs[i] == doctest::Approx(count / double(occurrences(seq, above))));
      CHECK(count / match_count >= config.min_token_prob * (1 - 1e-6));
      score += count / match_count;
      if (i >= chain.tokens.size()) min_branch_count = std::min(min_branch_count, count);
    }
    CHECK(p.score == doctest::Approx(score));
    branched += !tree.is_chain();
    full += tree.size() == static_cast<size_t>(max_nodes) && !tree.is_chain();
    short_of_nodes += tree.size() < static_cast<size_t>(max_nodes) && !tree.is_chain();

    // Nothing left out beats what went in: a tree short of max_nodes has no
    // candidate left; a full one none with a higher count than its branches.
    for (int node = -1; node < static_cast<int>(tree.size()); ++node) {
      const Tokens& above = node < 0 ? match : paths[static_cast<size_t>(node)];
      if ((node < 0 ? 0 : depths[static_cast<size_t>(node)]) >= depth_limit) continue;
      for (int32_t t = 0; t < kVocab; ++t) {
        bool taken = false;
        for (size_t j = 0; j < tree.size(); ++j)
          taken |= tree.parents[j] == node && tree.tokens[j] == t;
        if (taken) continue;
        Tokens next = above;
        next.push_back(t);
        const uint32_t count = occurrences(seq, next);
        if (count == 0 || count / match_count < config.min_token_prob * (1 + 1e-6)) continue;
        CAPTURE(node);
        CAPTURE(t);
        CHECK(tree.size() == static_cast<size_t>(max_nodes));
        CHECK(count <= min_branch_count);
      }
    }
  }
  CHECK(branched > 100);
  CHECK(full > 20);
  CHECK(short_of_nodes > 20);
}

}  // namespace
}  // namespace ghostd::runtime
