#include "runtime/speculative/draft_tree.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace ghostd::runtime {
namespace {

using Tokens = std::vector<int32_t>;

// A tree with two branches at the root and one below node 0:
//   root ─ 5 (0) ─ 6 (1) ─ 7 (2)
//        │       └ 8 (3)
//        └ 9 (4)
DraftTree branched() {
  DraftTree t;
  t.tokens = {5, 6, 7, 8, 9};
  t.parents = {-1, 0, 1, 0, -1};
  t.probs = {0.5f, 0.6f, 0.7f, 0.4f, 0.3f};
  return t;
}

TEST_CASE("draft_tree: chain and is_chain") {
  const DraftTree c = DraftTree::chain({4, 5, 6});
  CHECK(c.tokens == Tokens{4, 5, 6});
  CHECK(c.parents == Tokens{-1, 0, 1});
  CHECK(c.probs.empty());
  CHECK(c.is_chain());
  CHECK(c.check().empty());
  CHECK(c.size() == 3);
  CHECK_FALSE(c.empty());

  const DraftTree none = DraftTree::chain({});
  CHECK(none.empty());
  CHECK(none.is_chain());
  CHECK(none.check().empty());

  CHECK_FALSE(branched().is_chain());
  CHECK(branched().check().empty());
}

TEST_CASE("draft_tree: check names what is wrong") {
  auto fails_with = [](const DraftTree& t, const std::string& part) {
    const std::string error = t.check();
    CAPTURE(error);
    CHECK(error.find(part) != std::string::npos);
  };
  DraftTree sizes = branched();
  sizes.parents.pop_back();
  fails_with(sizes, "5 tokens, 4 parents");

  DraftTree probs = branched();
  probs.probs.pop_back();
  fails_with(probs, "4 probabilities");

  DraftTree forward = branched();
  forward.parents[1] = 1;  // its own parent
  fails_with(forward, "node 1 has parent 1");
  forward.parents[1] = 3;  // a parent after its child
  fails_with(forward, "node 1 has parent 3");
  forward.parents[1] = -2;
  fails_with(forward, "node 1 has parent -2");

  DraftTree siblings = branched();
  siblings.tokens[3] = 6;  // same token as node 1, both children of node 0
  fails_with(siblings, "nodes 1 and 3 are siblings");
  siblings = branched();
  siblings.tokens[4] = 5;  // same token as node 0 at the root
  fails_with(siblings, "nodes 0 and 4 are siblings");

  // The same token under different parents is fine.
  DraftTree cousins = branched();
  cousins.tokens[2] = 9;
  CHECK(cousins.check().empty());

  Tokens many(kMaxDraftTreeNodes);
  for (size_t i = 0; i < many.size(); ++i) many[i] = static_cast<int32_t>(i);
  CHECK(DraftTree::chain(many).check().empty());
  many.push_back(1000);
  fails_with(DraftTree::chain(many), "64 nodes, more than 63");
}

TEST_CASE("draft_tree: depths") {
  CHECK(branched().depths() == std::vector<int>{1, 2, 3, 2, 1});
  CHECK(DraftTree::chain({1, 1, 1, 1}).depths() == std::vector<int>{1, 2, 3, 4});
  CHECK(DraftTree{}.depths().empty());
}

TEST_CASE("draft_tree: keep drops the unkept nodes and their descendants") {
  const DraftTree t = branched();
  SUBCASE("all") {
    const std::vector<char> all(t.size(), 1);
    const DraftTree k = t.keep(all);
    CHECK(k.tokens == t.tokens);
    CHECK(k.parents == t.parents);
    CHECK(k.probs == t.probs);
  }
  SUBCASE("a middle node takes its subtree with it") {
    const DraftTree k = t.keep(std::vector<char>{1, 0, 1, 1, 1});
    CHECK(k.tokens == Tokens{5, 8, 9});
    CHECK(k.parents == Tokens{-1, 0, -1});
    CHECK(k.probs == std::vector<float>{0.5f, 0.4f, 0.3f});
    CHECK(k.check().empty());
  }
  SUBCASE("parents are renumbered") {
    const DraftTree k = t.keep(std::vector<char>{1, 1, 1, 0, 0});
    CHECK(k.tokens == Tokens{5, 6, 7});
    CHECK(k.is_chain());
    const DraftTree other = t.keep(std::vector<char>{0, 1, 1, 1, 1});
    CHECK(other.tokens == Tokens{9});
    CHECK(other.parents == Tokens{-1});
  }
  SUBCASE("no probs stays without probs") {
    const DraftTree k = DraftTree::chain({1, 2, 3}).keep(std::vector<char>{1, 1, 0});
    CHECK(k.tokens == Tokens{1, 2});
    CHECK(k.probs.empty());
  }
}

}  // namespace
}  // namespace ghostd::runtime
