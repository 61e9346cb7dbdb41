#include "runtime/speculative/prompt_lookup.h"

#include <algorithm>

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

}  // namespace ghostd::runtime
