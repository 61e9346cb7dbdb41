#include "runtime/cpu/thread_pool.h"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <thread>
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

TEST_CASE("thread pool: pieces cover every index once, in whole pieces, taken by whoever is free") {
  for (int threads : {1, 2, 3, 8}) {
    CAPTURE(threads);
    ThreadPool pool(threads);
    for (int64_t n : {int64_t{1}, int64_t{15}, int64_t{16}, int64_t{1000}, int64_t{8960}}) {
      for (int64_t piece : {int64_t{0}, int64_t{1}, int64_t{16}, int64_t{112}, int64_t{100000}}) {
        CAPTURE(n);
        CAPTURE(piece);
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::atomic<int> pieces{0};
        std::atomic<bool> bad{false};
        const int64_t p = piece < 1 ? 1 : piece;
        pool.parallel_pieces(n, piece, [&](int64_t b, int64_t e) {
          ++pieces;
          if (b % p != 0 || (e - b != p && e != n)) bad = true;  // whole pieces; only the last one short
          for (int64_t i = b; i < e; ++i) ++hits[static_cast<size_t>(i)];
        });
        for (auto& h : hits) REQUIRE(h.load() == 1);
        CHECK(pieces.load() == (n + p - 1) / p);
        CHECK_FALSE(bad.load());
      }
    }
  }
  // A slow piece does not hold the others: the thread that takes the first
  // piece stays on it until the other thread has taken the rest (both take
  // part in the region, so it does; the deadline only bounds a broken pool),
  // where fixed chunks would leave it half the pieces.
  ThreadPool pool(2);
  std::atomic<int> by_slow{0}, by_other{0};
  std::atomic<bool> first{true};
  const std::thread::id none{};
  std::atomic<std::thread::id> slow{none};
  pool.parallel_pieces(64, 1, [&](int64_t, int64_t) {
    if (first.exchange(false)) {
      slow = std::this_thread::get_id();
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (by_other.load() < 63 && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (slow.load() == std::this_thread::get_id()) ++by_slow;
    else ++by_other;
  });
  CHECK(by_slow.load() < 32);
}
