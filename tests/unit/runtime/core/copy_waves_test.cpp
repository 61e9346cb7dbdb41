// CopyWaves: the waves of ordered block copies that the CUDA backend launches
// one kernel each, checked on the host: hand cases, and running random copy
// lists wave by wave (every copy of a wave reading the blocks as they were
// when the wave began) gives the result of copying one by one.
#include "runtime/core/copy_waves.h"

#include <doctest/doctest.h>

#include <random>
#include <vector>

using ghostd::runtime::CopyWaves;
using ghostd::runtime::KvBlockCopy;

namespace {

std::vector<size_t> ends_of(std::vector<KvBlockCopy> copies, size_t max_copies = 64) {
  CopyWaves waves;
  return waves.split(copies, max_copies);
}

}  // namespace

TEST_CASE("copy waves: a copy waits for the copies whose blocks it touches") {
  CHECK(ends_of({}).empty());
  CHECK(ends_of({{0, 1}}) == std::vector<size_t>{1});
  CHECK(ends_of({{0, 1}, {2, 3}, {4, 5}}) == std::vector<size_t>{3});  // independent
  CHECK(ends_of({{0, 1}, {0, 2}}) == std::vector<size_t>{2});          // one source read twice
  CHECK(ends_of({{0, 1}, {1, 2}}) == std::vector<size_t>{1, 2});       // reads what the first writes
  CHECK(ends_of({{0, 1}, {2, 0}}) == std::vector<size_t>{1, 2});       // writes what the first reads
  CHECK(ends_of({{0, 1}, {2, 1}}) == std::vector<size_t>{1, 2});       // writes what the first writes
  CHECK(ends_of({{0, 1}, {1, 0}}) == std::vector<size_t>{1, 2});       // a swap needs two waves
  CHECK(ends_of({{0, 1}, {2, 3}, {4, 5}, {6, 7}, {8, 9}}, 2) == std::vector<size_t>{2, 4, 5});
}

TEST_CASE("copy waves: running the waves equals copying in order, for random copy lists") {
  std::mt19937 rng(11);
  CopyWaves waves;
  waves.reserve(64);
  for (int trial = 0; trial < 2000; ++trial) {
    const int blocks = 2 + static_cast<int>(rng() % 10);
    std::vector<KvBlockCopy> copies(rng() % 24);
    for (auto& c : copies) {
      c.src = static_cast<int32_t>(rng() % blocks);
      do c.dst = static_cast<int32_t>(rng() % blocks);
      while (c.dst == c.src);
    }
    const size_t max_copies = 1 + rng() % 6;
    std::vector<int> in_order(static_cast<size_t>(blocks)), by_waves;
    for (int b = 0; b < blocks; ++b) in_order[static_cast<size_t>(b)] = b;
    by_waves = in_order;
    for (const auto& c : copies) in_order[static_cast<size_t>(c.dst)] = in_order[static_cast<size_t>(c.src)];
    size_t begin = 0;
    for (size_t end : waves.split(copies, max_copies)) {
      REQUIRE(end > begin);
      CHECK(end - begin <= max_copies);
      const std::vector<int> before = by_waves;  // a wave's copies run at once
      for (size_t i = begin; i < end; ++i)
        by_waves[static_cast<size_t>(copies[i].dst)] = before[static_cast<size_t>(copies[i].src)];
      begin = end;
    }
    CHECK(begin == copies.size());
    CHECK(by_waves == in_order);
  }
}
