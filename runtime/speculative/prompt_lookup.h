// Prompt-lookup drafts for speculative decoding: code repeats itself, so the
// tokens that followed an earlier occurrence of a sequence's last few tokens
// (in its own prompt or output) are a cheap guess at what comes next.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

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

}  // namespace ghostd::runtime
