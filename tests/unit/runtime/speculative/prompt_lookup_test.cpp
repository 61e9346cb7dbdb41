#include "runtime/speculative/prompt_lookup.h"

#include <doctest/doctest.h>

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

}  // namespace
}  // namespace ghostd::runtime
