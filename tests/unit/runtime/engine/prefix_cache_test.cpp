#include "runtime/engine/prefix_cache.h"

#include <doctest/doctest.h>

#include <numeric>
#include <random>
#include <vector>

using namespace ghostd::runtime;

namespace {
constexpr int kBs = 4;

// A sequence the way the scheduler uses one: blocks that hold `tokens`.
struct Seq {
  std::vector<int32_t> tokens;
  SequenceBlocks blocks;
};

void fill(BlockPool& pool, Seq& s, std::vector<int32_t> tokens) {
  s.tokens = std::move(tokens);
  std::vector<BlockCopy> copies;
  REQUIRE(s.blocks.append(pool, static_cast<int>(s.tokens.size()) - s.blocks.num_tokens(), copies));
}

Status check_accounting(const BlockPool& pool, const PrefixCache& cache,
                        std::initializer_list<const Seq*> seqs) {
  GHOSTD_TRY_STATUS(cache.validate());
  std::vector<BlockId> held;
  cache.collect_held(held);
  for (const Seq* s : seqs)
    held.insert(held.end(), s->blocks.blocks().begin(), s->blocks.blocks().end());
  return pool.validate(held);
}

std::vector<int32_t> iota(int n, int start = 0) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}
}  // namespace

TEST_CASE("match returns the longest cached prefix, whole and partial blocks") {
  BlockPool pool(16, kBs);
  PrefixCache cache(pool);
  Seq a;
  fill(pool, a, iota(10));  // 2 full blocks + 2 tokens
  CHECK(cache.insert(a.tokens, a.blocks.blocks(), "a") == 2);
  CHECK(cache.num_cached_blocks() == 2);
  CHECK(cache.insert(a.tokens, a.blocks.blocks(), "a") == 0);  // idempotent
  struct Case {
    std::vector<int32_t> query;
    int expect_tokens;
    int expect_blocks;
  };
  std::vector<Case> cases = {
      {iota(10), 8, 2},                      // both full blocks; the tail is not cached
      {iota(8), 8, 2},                       // exact
      {iota(6), 6, 2},                       // second block partially
      {{0, 1, 2, 3, 4, 5, 99, 7, 8}, 6, 2},  // diverges inside block 2
      {{0, 1, 2, 99, 4, 5, 6, 7}, 3, 1},     // diverges inside block 1: partial first block
      {{99, 1, 2, 3}, 0, 0},                 // nothing
      {{}, 0, 0},
  };
  for (const Case& c : cases) {
    CAPTURE(c.query.size());
    PrefixMatch m = cache.match(c.query, "b");
    CHECK(m.n_tokens == c.expect_tokens);
    REQUIRE(static_cast<int>(m.blocks.size()) == c.expect_blocks);
    for (size_t i = 0; i < m.blocks.size(); ++i) CHECK(m.blocks[i] == a.blocks.blocks()[i]);
    for (BlockId b : m.blocks) pool.release(b);
  }
  REQUIRE(check_accounting(pool, cache, {&a}).ok());
  a.blocks.release(pool);
  cache.clear();
  CHECK(pool.num_free() == 16);
}

TEST_CASE("a matched partial block is copied on the first append") {
  BlockPool pool(16, kBs);
  PrefixCache cache(pool);
  Seq a;
  fill(pool, a, iota(8));
  cache.insert(a.tokens, a.blocks.blocks(), "a");
  a.blocks.release(pool);
  std::vector<int32_t> query = {0, 1, 2, 3, 4, 5, 42, 43};
  PrefixMatch m = cache.match(query, "a");
  REQUIRE(m.n_tokens == 6);
  Seq b;
  b.blocks.adopt(m.blocks, m.n_tokens, kBs);
  std::vector<BlockCopy> copies;
  REQUIRE(b.blocks.append(pool, 2, copies));
  REQUIRE(copies.size() == 1);
  CHECK(copies[0].src == m.blocks[1]);
  CHECK(copies[0].n_tokens == 2);
  b.tokens = query;
  REQUIRE(check_accounting(pool, cache, {&b}).ok());
  // Inserting b's diverging block makes a sibling chain sharing block 0.
  CHECK(cache.insert(b.tokens, b.blocks.blocks(), "b") == 1);
  CHECK(cache.num_cached_blocks() == 3);
  b.blocks.release(pool);
  REQUIRE(check_accounting(pool, cache, {}).ok());
  CHECK(cache.num_evictable() == 3);
  cache.clear();
  CHECK(pool.num_free() == 16);
}

TEST_CASE("hash collisions never return a wrong prefix") {
  BlockPool pool(64, kBs);
  // Every block hashes the same: lookups must fall back to token equality.
  PrefixCache cache(pool, PrefixCache::Config{},
                    [](uint64_t, std::span<const int32_t>) -> uint64_t { return 7; });
  std::mt19937 rng(3);
  std::vector<Seq> seqs(8);
  for (auto& s : seqs) {
    std::vector<int32_t> t(12);
    for (auto& x : t) x = static_cast<int32_t>(rng() % 3);  // tiny vocabulary: many shared prefixes
    fill(pool, s, t);
    cache.insert(s.tokens, s.blocks.blocks(), "d");
  }
  REQUIRE(cache.validate().ok());
  for (int q = 0; q < 500; ++q) {
    std::vector<int32_t> query(static_cast<size_t>(rng() % 13));
    for (auto& x : query) x = static_cast<int32_t>(rng() % 3);
    PrefixMatch m = cache.match(query, "d");
    // The longest prefix shared with any inserted sequence (brute force).
    int best = 0;
    for (auto& s : seqs) {
      int len = static_cast<int>(
          std::mismatch(query.begin(), query.end(), s.tokens.begin(), s.tokens.end()).first -
          query.begin());
      best = std::max(best, len);
    }
    CHECK(m.n_tokens == best);
    // The returned blocks hold exactly the query's tokens: find a sequence whose
    // block at each position is the one returned and whose tokens agree.
    for (size_t b = 0; b < m.blocks.size(); ++b) {
      int covered = std::min<int>(kBs, m.n_tokens - static_cast<int>(b) * kBs);
      bool found = false;
      for (auto& s : seqs) {
        for (size_t j = 0; j < s.blocks.blocks().size(); ++j) {
          if (s.blocks.blocks()[j] != m.blocks[b]) continue;
          found = j == b && std::equal(query.begin() + b * kBs, query.begin() + b * kBs + covered,
                                       s.tokens.begin() + j * kBs);
        }
      }
      CHECK(found);
    }
    for (BlockId b : m.blocks) pool.release(b);
  }
  for (auto& s : seqs) s.blocks.release(pool);
  REQUIRE(check_accounting(pool, cache, {}).ok());
  cache.clear();
  CHECK(pool.num_free() == 64);
}

TEST_CASE("eviction frees unreferenced leaves, LRU, recently active documents last") {
  BlockPool pool(32, kBs);
  PrefixCache cache(pool, PrefixCache::Config{.retained_documents = 1});
  auto cache_doc = [&](const char* doc, int start) {
    Seq s;
    fill(pool, s, iota(8, start));
    cache.insert(s.tokens, s.blocks.blocks(), doc);
    std::vector<BlockId> blocks(s.blocks.blocks().begin(), s.blocks.blocks().end());
    s.blocks.release(pool);
    return blocks;
  };
  auto old_doc = cache_doc("old", 100);
  auto mid_doc = cache_doc("mid", 200);
  auto active = cache_doc("active", 300);
  // "old" is used again after "mid" but "active" is the retained document.
  PrefixMatch m = cache.match(iota(8, 100), "old");
  for (BlockId b : m.blocks) pool.release(b);
  // A held block cannot be evicted, nor can its ancestors.
  PrefixMatch held = cache.match(iota(8, 200), "mid");
  cache.touch_document("active");
  CHECK(cache.num_evictable() == 4);
  CHECK(cache.evict(1) == 1);
  CHECK(pool.ref_count(old_doc[1]) == 0);  // the old leaf goes first
  for (BlockId b : held.blocks) pool.release(b);
  CHECK(cache.num_evictable() == 5);
  CHECK(cache.evict(3) == 3);
  // The rest of old, then mid (LRU among the unretained) go; the retained document stays.
  CHECK(pool.ref_count(mid_doc[0]) == 0);
  CHECK(pool.ref_count(old_doc[0]) == 0);
  CHECK(pool.ref_count(active[0]) == 1);
  CHECK(cache.evict(10) == 2);
  CHECK(cache.num_cached_blocks() == 0);
  CHECK(pool.num_free() == 32);
  REQUIRE(check_accounting(pool, cache, {}).ok());
}

TEST_CASE("documents that share context share blocks") {
  BlockPool pool(32, kBs);
  PrefixCache cache(pool);
  std::vector<int32_t> repo = iota(8, 500);  // shared repository context
  auto with_file = [&](int start) {
    auto t = repo;
    auto f = iota(8, start);
    t.insert(t.end(), f.begin(), f.end());
    return t;
  };
  Seq a;
  fill(pool, a, with_file(0));
  cache.insert(a.tokens, a.blocks.blocks(), "a.cpp");
  PrefixMatch m = cache.match(with_file(50), "b.cpp");
  CHECK(m.n_tokens == 8);
  CHECK(m.blocks[0] == a.blocks.blocks()[0]);
  CHECK(pool.ref_count(m.blocks[0]) == 3);  // a, cache, b
  for (BlockId b : m.blocks) pool.release(b);
  a.blocks.release(pool);
  cache.clear();
  CHECK(pool.num_free() == 32);
}

TEST_CASE("a chain cached twice in different blocks is not extended under the other copy") {
  BlockPool pool(16, kBs);
  PrefixCache cache(pool);
  Seq a, b;
  fill(pool, a, iota(8));
  fill(pool, b, iota(12));  // same first 8 tokens, computed separately
  CHECK(cache.insert(a.tokens, a.blocks.blocks(), "a") == 2);
  CHECK(cache.insert(b.tokens, b.blocks.blocks(), "b") == 0);
  REQUIRE(check_accounting(pool, cache, {&a, &b}).ok());
  a.blocks.release(pool);
  // Every cached block is now held by the cache alone: all can be evicted.
  CHECK(cache.num_evictable() == 2);
  CHECK(cache.evict(16) == 2);
  b.blocks.release(pool);
  CHECK(pool.num_free() == 16);
}

TEST_CASE("a prefix cached under one salt is never matched under another") {
  BlockPool pool(16, kBs);
  PrefixCache cache(pool);
  Seq a;
  fill(pool, a, iota(10));
  CHECK(cache.insert(a.tokens, a.blocks.blocks(), "doc", "tenant-a") == 2);
  struct Case {
    const char* salt;
    int expect_tokens;
  };
  // Whole blocks and the partial-block path are both salted.
  for (const Case& c : {Case{"tenant-a", 8}, Case{"tenant-b", 0}, Case{"", 0}}) {
    CAPTURE(c.salt);
    for (const auto& query : {iota(10), iota(6), iota(3)}) {
      PrefixMatch m = cache.match(query, "doc", c.salt);
      CHECK(m.n_tokens == std::min<int>(c.expect_tokens, static_cast<int>(query.size())));
      for (BlockId b : m.blocks) pool.release(b);
    }
  }
  // The same tokens under another salt are cached again, in their own chain.
  Seq b;
  fill(pool, b, iota(10));
  CHECK(cache.insert(b.tokens, b.blocks.blocks(), "doc", "tenant-b") == 2);
  PrefixMatch m = cache.match(iota(8), "doc", "tenant-b");
  REQUIRE(m.blocks.size() == 2);
  CHECK(m.blocks[0] == b.blocks.blocks()[0]);
  for (BlockId blk : m.blocks) pool.release(blk);
  REQUIRE(check_accounting(pool, cache, {&a, &b}).ok());
  a.blocks.release(pool);
  b.blocks.release(pool);
  cache.clear();
  CHECK(pool.num_free() == 16);
}
