#include "runtime/speculative/prompt_lookup.h"

#include <algorithm>
#include <cstddef>

namespace ghostd::runtime {

std::vector<int32_t> prompt_lookup_draft(std::span<const int32_t> tokens,
                                         const PromptLookupConfig& config) {
  const int len = static_cast<int>(tokens.size());
  if (config.max_draft <= 0) return {};
  for (int n = std::min(config.max_ngram, len - 1); n >= std::max(1, config.min_ngram); --n) {
    std::span<const int32_t> suffix = tokens.last(static_cast<size_t>(n));
    // Most recent occurrence first: nearby text predicts best. An occurrence
    // must end before the suffix itself so at least one token follows it.
    for (int start = len - n - 1; start >= 0; --start) {
      if (!std::equal(suffix.begin(), suffix.end(), tokens.begin() + start)) continue;
      const int from = start + n;
      const int count = std::min(config.max_draft, len - from);
      return {tokens.begin() + from, tokens.begin() + from + count};
    }
  }
  return {};
}

DraftTree prompt_lookup_tree(std::span<const int32_t> tokens, const PromptLookupConfig& config,
                             int max_nodes) {
  const int len = static_cast<int>(tokens.size());
  max_nodes = std::min(max_nodes, kMaxDraftTreeNodes);
  if (config.max_draft <= 0 || max_nodes <= 0) return {};
  // Where each continuation starts, most recent occurrence first; the same
  // scan as prompt_lookup_draft, which stops at the first.
  std::vector<int> from;
  for (int n = std::min(config.max_ngram, len - 1);
       n >= std::max(1, config.min_ngram) && from.empty(); --n) {
    std::span<const int32_t> suffix = tokens.last(static_cast<size_t>(n));
    for (int start = len - n - 1; start >= 0; --start) {
      if (!std::equal(suffix.begin(), suffix.end(), tokens.begin() + start)) continue;
      from.push_back(start + n);
      if (static_cast<int>(from.size()) == kPromptLookupMaxOccurrences) break;
    }
  }
  if (from.empty()) return {};

  DraftTree tree;
  // Occurrences through each node, for probs.
  std::vector<int> through;
  for (const int f : from) {
    const int count = std::min(config.max_draft, len - f);
    int32_t parent = -1;
    for (int i = 0; i < count; ++i) {
      const int32_t token = tokens[static_cast<size_t>(f + i)];
      // Siblings are few (at most one per occurrence): a linear search.
      int32_t node = -1;
      for (size_t j = parent < 0 ? 0 : static_cast<size_t>(parent) + 1; j < tree.size(); ++j) {
        if (tree.parents[j] == parent && tree.tokens[j] == token) {
          node = static_cast<int32_t>(j);
          break;
        }
      }
      if (node < 0) {
        if (tree.size() == static_cast<size_t>(max_nodes)) break;
        node = static_cast<int32_t>(tree.size());
        tree.tokens.push_back(token);
        tree.parents.push_back(parent);
        through.push_back(0);
      }
      ++through[static_cast<size_t>(node)];
      parent = node;
    }
  }
  tree.probs.resize(tree.size());
  for (size_t i = 0; i < tree.size(); ++i) {
    const int32_t p = tree.parents[i];
    const int total = p < 0 ? static_cast<int>(from.size()) : through[static_cast<size_t>(p)];
    tree.probs[i] = static_cast<float>(through[i]) / static_cast<float>(total);
  }
  return tree;
}

}  // namespace ghostd::runtime
