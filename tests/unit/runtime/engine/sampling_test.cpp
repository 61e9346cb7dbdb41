#include "runtime/engine/sampling.h"

#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <vector>

using namespace ghostd::runtime;

TEST_CASE("argmax picks the first maximum") {
  struct Case {
    std::vector<float> logits;
    int32_t want;
  };
  const float nan = std::nanf("");
  for (const Case& c : std::vector<Case>{{{1, 3, 2}, 1},
                                         {{5, 5, 1}, 0},
                                         {{-1, -2, -0.5f}, 2},
                                         {{7}, 0},
                                         {{nan, 1, 2}, 2},  // NaN is never chosen
                                         {{1, nan, 0}, 0},
                                         {{nan, nan}, 0},
                                         {{}, 0}})
    CHECK(argmax(c.logits) == c.want);
}

TEST_CASE("greedy sampler is argmax") {
  Sampler s(SamplingParams{});
  std::vector<float> l{0.1f, 2.0f, 1.9f};
  for (int i = 0; i < 5; ++i) CHECK(s.sample(l) == 1);
}

TEST_CASE("top-k 1 is greedy even at high temperature") {
  SamplingParams p;
  p.temperature = 5.0f;
  p.top_k = 1;
  p.seed = 7;
  Sampler s(p);
  std::vector<float> l{0.0f, 1.0f, 0.5f, 0.9f};
  for (int i = 0; i < 50; ++i) CHECK(s.sample(l) == 1);
}

TEST_CASE("top-p keeps only the nucleus") {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.5f;
  p.seed = 3;
  Sampler s(p);
  // Token 2 holds ~0.84 of the mass; the nucleus at 0.5 is token 2 alone.
  std::vector<float> l{0.0f, 0.5f, 2.5f, -1.0f};
  for (int i = 0; i < 100; ++i) CHECK(s.sample(l) == 2);
}

TEST_CASE("temperature sampling follows the distribution and the seed") {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 42;
  std::vector<float> l{0.0f, std::log(3.0f)};  // probabilities 1/4, 3/4
  Sampler a(p), b(p);
  std::map<int, int> counts;
  for (int i = 0; i < 4000; ++i) {
    int x = a.sample(l);
    CHECK(x == b.sample(l));  // same seed, same stream
    counts[x]++;
  }
  CHECK(counts[1] > 2800);
  CHECK(counts[1] < 3200);
}
