#include "runtime/engine/kv_cache.h"

#include <doctest/doctest.h>

#include <random>
#include <vector>

using ghostd::runtime::BlockCopy;
using ghostd::runtime::BlockId;
using ghostd::runtime::BlockPool;
using ghostd::runtime::SequenceBlocks;

namespace {
std::vector<BlockId> held_by(std::initializer_list<const SequenceBlocks*> seqs) {
  std::vector<BlockId> held;
  for (const SequenceBlocks* s : seqs)
    held.insert(held.end(), s->blocks().begin(), s->blocks().end());
  return held;
}
}  // namespace

TEST_CASE("blocks_for_budget") {
  struct Case {
    size_t bytes, per_block;
    int expected;
  };
  for (Case c : {Case{0, 16, 0}, Case{15, 16, 0}, Case{16, 16, 1}, Case{1000, 16, 62},
                 Case{1000, 0, 0}, Case{size_t{1} << 62, 1, INT32_MAX}}) {
    CAPTURE(c.bytes);
    CHECK(BlockPool::blocks_for_budget(c.bytes, c.per_block) == c.expected);
  }
}

TEST_CASE("pool allocates, shares and frees with reference counts") {
  BlockPool pool(3, 4);
  CHECK(pool.num_free() == 3);
  auto a = pool.allocate();
  auto b = pool.allocate();
  auto c = pool.allocate();
  REQUIRE((a && b && c));
  CHECK_FALSE(pool.allocate().has_value());
  pool.add_ref(*a);
  CHECK(pool.ref_count(*a) == 2);
  std::vector<BlockId> held = {*a, *a, *b, *c};
  CHECK(pool.validate(held).ok());
  std::vector<BlockId> wrong = {*a, *b, *c};
  CHECK(pool.validate(wrong).message().find("ref count 2 but 1 holders") != std::string::npos);
  pool.release(*a);
  CHECK(pool.num_free() == 0);
  pool.release(*a);
  pool.release(*b);
  pool.release(*c);
  CHECK(pool.num_free() == 3);
  CHECK(pool.validate(std::vector<BlockId>{}).ok());
}

TEST_CASE("sequence appends across block boundaries and truncates") {
  BlockPool pool(4, 4);
  SequenceBlocks seq;
  std::vector<BlockCopy> copies;
  struct Step {
    int append, expect_tokens, expect_blocks;
  };
  for (Step s : {Step{3, 3, 1}, Step{1, 4, 1}, Step{1, 5, 2}, Step{7, 12, 3}}) {
    CAPTURE(s.append);
    REQUIRE(seq.append(pool, s.append, copies));
    CHECK(seq.num_tokens() == s.expect_tokens);
    CHECK(static_cast<int>(seq.blocks().size()) == s.expect_blocks);
    CHECK(pool.validate(held_by({&seq})).ok());
  }
  CHECK(copies.empty());
  CHECK(seq.blocks_needed(pool, 5) == 2);
  CHECK_FALSE(seq.append(pool, 9, copies));  // needs 3 blocks, 1 free: unchanged
  CHECK(seq.num_tokens() == 12);
  seq.truncate(pool, 5);
  CHECK(seq.blocks().size() == 2);
  CHECK(pool.num_free() == 2);
  seq.truncate(pool, 4);
  CHECK(seq.blocks().size() == 1);
  seq.release(pool);
  CHECK(pool.num_free() == 4);
  CHECK(pool.validate(std::vector<BlockId>{}).ok());
}

TEST_CASE("append into a shared partial block copies it first") {
  BlockPool pool(4, 4);
  SequenceBlocks a;
  std::vector<BlockCopy> copies;
  REQUIRE(a.append(pool, 6, copies));  // blocks [x (full), y (2 used)]
  // b shares both blocks but only the first 5 tokens.
  std::vector<BlockId> shared(a.blocks().begin(), a.blocks().end());
  for (BlockId blk : shared) pool.add_ref(blk);
  SequenceBlocks b;
  b.adopt(shared, 5, pool.block_size());
  CHECK(b.blocks_needed(pool, 1) == 1);
  REQUIRE(b.append(pool, 1, copies));
  REQUIRE(copies.size() == 1);
  CHECK(copies[0].src == shared[1]);
  CHECK(copies[0].n_tokens == 1);
  CHECK(b.blocks()[0] == shared[0]);  // full block stays shared
  CHECK(b.blocks()[1] == copies[0].dst);
  CHECK(pool.ref_count(shared[1]) == 1);
  CHECK(pool.validate(held_by({&a, &b})).ok());
  // Appending to a full shared block needs no copy.
  copies.clear();
  SequenceBlocks c;
  pool.add_ref(shared[0]);
  c.adopt({shared[0]}, 4, pool.block_size());
  REQUIRE(c.append(pool, 1, copies));
  CHECK(copies.empty());
  CHECK(pool.validate(held_by({&a, &b, &c})).ok());
  // Rolling back into the shared block then appending copies again.
  c.truncate(pool, 3);
  CHECK(c.blocks_needed(pool, 1) == 1);
  REQUIRE(c.append(pool, 1, copies));
  CHECK(copies.size() == 1);
  for (SequenceBlocks* s : {&a, &b, &c}) s->release(pool);
  CHECK(pool.num_free() == 4);
  CHECK(pool.validate(std::vector<BlockId>{}).ok());
}

TEST_CASE("random append/truncate/share keeps pool accounting") {
  std::mt19937 rng(7);
  BlockPool pool(32, 4);
  std::vector<SequenceBlocks> seqs(6);
  std::vector<BlockCopy> copies;
  for (int step = 0; step < 5000; ++step) {
    auto& s = seqs[rng() % seqs.size()];
    switch (rng() % 4) {
      case 0:
      case 1:
        (void)s.append(pool, static_cast<int>(rng() % 9), copies);
        break;
      case 2:
        s.truncate(pool, s.num_tokens() == 0 ? 0 : static_cast<int>(rng() % s.num_tokens()));
        break;
      case 3: {  // share a prefix of another sequence
        auto& src = seqs[rng() % seqs.size()];
        if (&src == &s || src.num_tokens() == 0) break;
        s.release(pool);
        int n = 1 + static_cast<int>(rng() % src.num_tokens());
        int nb = (n + 3) / 4;
        std::vector<BlockId> blocks(src.blocks().begin(), src.blocks().begin() + nb);
        for (BlockId b : blocks) pool.add_ref(b);
        s.adopt(std::move(blocks), n, 4);
        break;
      }
    }
    std::vector<BlockId> held;
    for (auto& q : seqs) held.insert(held.end(), q.blocks().begin(), q.blocks().end());
    REQUIRE(pool.validate(held).ok());
    for (const BlockCopy& c : copies) CHECK(c.src != c.dst);
    copies.clear();
  }
  for (auto& s : seqs) s.release(pool);
  CHECK(pool.num_free() == 32);
}
