#include "runtime/cpu/thread_pool.h"

#include <doctest/doctest.h>

#include <atomic>
#include <vector>

using ghostd::runtime::cpu::ThreadPool;

TEST_CASE("thread pool: every index once, in chunks of at least the grain, region after region") {
  for (int threads : {1, 2, 3, 8}) {
    CAPTURE(threads);
    ThreadPool pool(threads);
    CHECK(pool.size() == threads);
    std::vector<int> hits;
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{64}, int64_t{1000}, int64_t{100003}}) {
      for (int64_t grain : {int64_t{1}, int64_t{16}, int64_t{5000}}) {
        hits.assign(static_cast<size_t>(n), 0);
        std::atomic<int> chunks{0};
        std::atomic<bool> small{false};
        pool.parallel_for(n, grain, [&](int64_t b, int64_t e) {
          ++chunks;
          if (e - b < grain && e != n) small = true;
          for (int64_t i = b; i < e; ++i) ++hits[static_cast<size_t>(i)];
        });
        for (int h : hits) REQUIRE(h == 1);
        CHECK(chunks.load() <= threads);
        CHECK_FALSE(small.load());
      }
    }
  }
}

TEST_CASE("thread pool: a region right after construction runs (no lost start), and many short regions") {
  for (int round = 0; round < 200; ++round) {
    ThreadPool pool(4);
    std::atomic<int64_t> sum{0};
    pool.parallel_for(4, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) sum += i + 1;
    });
    REQUIRE(sum.load() == 10);
  }
  ThreadPool pool(3);
  std::atomic<int64_t> total{0};
  for (int r = 0; r < 20000; ++r) pool.parallel_for(3, 1, [&](int64_t b, int64_t e) { total += e - b; });
  CHECK(total.load() == 60000);
}
