// Prompt-lookup drafts for speculative decoding: code repeats itself, so the
// tokens that followed an earlier occurrence of a sequence's last few tokens
// (in its own prompt or output) are a cheap guess at what comes next.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "runtime/speculative/draft_tree.h"

namespace ghostd::runtime {

struct PromptLookupConfig {
  int max_ngram = 4;  // longest suffix tried first
  int min_ngram = 2;  // shorter matches are too often wrong to pay for a verify
  int max_draft = 4;  // tokens proposed
};

// Up to `max_draft` tokens that followed the most recent earlier occurrence of
// the longest matching suffix n-gram of `tokens` (n from max_ngram down to
// min_ngram); empty when nothing matches. Pure function; thread-safe.
std::vector<int32_t> prompt_lookup_draft(std::span<const int32_t> tokens,
                                         const PromptLookupConfig& config);

// Most recent occurrences of a matched n-gram gathered for a tree: older ones
// predict worse, 8 continuations of the default 4 tokens already fill half of
// the largest tree the attention mask takes, and in repetitive text the scan
// stops there instead of walking the whole sequence.
inline constexpr int kPromptLookupMaxOccurrences = 8;

// The continuations (up to `max_draft` tokens each) of the most recent
// kPromptLookupMaxOccurrences occurrences of the n-gram prompt_lookup_draft
// matches, merged into a token tree of at most `max_nodes` nodes (capped at
// kMaxDraftTreeNodes): the most recent occurrence's continuation first as a
// chain (nodes 0..k-1 are prompt_lookup_draft's tokens), then each older one,
// sharing the nodes of the prefix it has in common with those before it,
// until the tree is full. probs[i] = the share of the gathered occurrences
// through node i's parent (the root: all of them) that continue through node
// i; a continuation cut short by the sequence's end passes on to no child.
// Empty when nothing matches. Pure function; thread-safe.
DraftTree prompt_lookup_tree(std::span<const int32_t> tokens, const PromptLookupConfig& config,
                             int max_nodes);

}  // namespace ghostd::runtime
