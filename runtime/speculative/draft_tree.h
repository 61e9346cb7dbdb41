// A token tree of draft candidates, verified in one forward pass with a tree
// attention mask (SpecInfer, Medusa): several guesses at the next tokens
// share their common prefix, so a wrong first guess does not waste the step.
//
// Node i is tokens[i]; its parent is parents[i]: -1 for a child of the root
// (the job's last committed token, fed first), else an earlier node. Parents
// come before their children, and siblings carry distinct tokens. A chain is
// the tree with parents[i] == i - 1; every proposer's plain draft is one.
// probs[i], when given, is the proposer's estimate that node i is the right
// token once its parent is (a count ratio of the suffix index); empty when
// the proposer has no such estimate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace ghostd::runtime {

// Nodes per tree, root excluded: the attention mask of a fed token is one
// 64-bit word over its sequence's fed tokens (the root and the nodes).
inline constexpr int kMaxDraftTreeNodes = 63;

struct DraftTree {
  std::vector<int32_t> tokens;
  std::vector<int32_t> parents;
  std::vector<float> probs;  // empty, or one per node

  size_t size() const { return tokens.size(); }
  bool empty() const { return tokens.empty(); }
  bool is_chain() const {
    for (size_t i = 0; i < parents.size(); ++i)
      if (parents[i] != static_cast<int32_t>(i) - 1) return false;
    return true;
  }
  static DraftTree chain(std::vector<int32_t> tokens) {
    DraftTree t;
    t.parents.resize(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) t.parents[i] = static_cast<int32_t>(i) - 1;
    t.tokens = std::move(tokens);
    return t;
  }
  // Empty when well formed; else what is wrong (sizes, a parent after its
  // child, two siblings with one token, more than kMaxDraftTreeNodes nodes).
  std::string check() const {
    if (parents.size() != tokens.size() || (!probs.empty() && probs.size() != tokens.size()))
      return "draft tree: " + std::to_string(tokens.size()) + " tokens, " + std::to_string(parents.size()) +
             " parents, " + std::to_string(probs.size()) + " probabilities";
    if (tokens.size() > static_cast<size_t>(kMaxDraftTreeNodes))
      return "draft tree: " + std::to_string(tokens.size()) + " nodes, more than " +
             std::to_string(kMaxDraftTreeNodes);
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (parents[i] < -1 || parents[i] >= static_cast<int32_t>(i))
        return "draft tree: node " + std::to_string(i) + " has parent " + std::to_string(parents[i]);
      for (size_t j = 0; j < i; ++j)
        if (parents[j] == parents[i] && tokens[j] == tokens[i])
          return "draft tree: nodes " + std::to_string(j) + " and " + std::to_string(i) +
                 " are siblings with the same token";
    }
    return {};
  }
  // Depth of each node (1 for a child of the root).
  std::vector<int> depths() const {
    std::vector<int> d(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) d[i] = parents[i] < 0 ? 1 : d[static_cast<size_t>(parents[i])] + 1;
    return d;
  }
  // The subtree of the nodes with keep[i] whose ancestors are all kept, in
  // the same order (parents renumbered).
  DraftTree keep(std::span<const char> keep) const {
    DraftTree out;
    std::vector<int32_t> index(tokens.size(), -1);
    for (size_t i = 0; i < tokens.size(); ++i) {
      const int32_t p = parents[i];
      if (!keep[i] || (p >= 0 && index[static_cast<size_t>(p)] < 0)) continue;
      index[i] = static_cast<int32_t>(out.tokens.size());
      out.tokens.push_back(tokens[i]);
      out.parents.push_back(p < 0 ? -1 : index[static_cast<size_t>(p)]);
      if (!probs.empty()) out.probs.push_back(probs[i]);
    }
    return out;
  }
};

// The fed indices of an accepted path through a fed tree (fed token 0 the
// root, parents as in SequenceInput::tree_parents): each of `accepted` is
// the child of the previous node with that token (siblings are distinct).
// False when one is not.
inline bool fed_tree_path(std::span<const int32_t> fed_parents, std::span<const int32_t> fed_tokens,
                          std::span<const int32_t> accepted, std::vector<int32_t>& path) {
  path.clear();
  int32_t at = 0;
  for (int32_t t : accepted) {
    int32_t next = -1;
    for (size_t i = static_cast<size_t>(at) + 1; i < fed_parents.size() && next < 0; ++i)
      if (fed_parents[i] == at && fed_tokens[i] == t) next = static_cast<int32_t>(i);
    if (next < 0) return false;
    path.push_back(next);
    at = next;
  }
  return true;
}

// What one verify says about a proposer's guesses, level by level down the
// accepted path. At each level with candidates, the first guess (the
// lowest-index child) was right (first_hits) or wrong (first_misses); when
// it was wrong and there were other candidates, one of them was right
// (alt_hits) or not (alt_trials counts both).
struct GuessOutcome {
  int first_hits = 0;
  int first_misses = 0;
  int alt_trials = 0;
  int alt_hits = 0;
  // A chain verify: `accepted` of `proposed`.
  static GuessOutcome chain(int proposed, int accepted) {
    return {accepted, accepted < proposed ? 1 : 0, 0, 0};
  }
};

// The outcome of a fed tree verify whose accepted path is `path` (fed
// indices, fed_tree_path).
inline GuessOutcome tree_outcome(std::span<const int32_t> fed_parents, std::span<const int32_t> path) {
  GuessOutcome o;
  int32_t at = 0;
  for (size_t level = 0;; ++level) {
    int32_t first = -1;
    int kids = 0;
    for (size_t i = static_cast<size_t>(at) + 1; i < fed_parents.size(); ++i) {
      if (fed_parents[i] != at) continue;
      if (first < 0) first = static_cast<int32_t>(i);
      ++kids;
    }
    if (kids == 0) return o;  // a leaf: nothing was rejected here
    const int32_t next = level < path.size() ? path[level] : -1;
    if (next == first) {
      ++o.first_hits;
    } else {
      ++o.first_misses;
      if (kids > 1) {
        ++o.alt_trials;
        if (next >= 0) ++o.alt_hits;
      }
    }
    if (next < 0) return o;
    at = next;
  }
}

}  // namespace ghostd::runtime
