// Draft-tree verify at the model: one forward over a token tree gives, for
// every node, bitwise the logits row a chain verify of the path to that node
// gives, and an accepted path whose KV is moved into place decodes on exactly
// as if the path had been fed as a chain.
#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <vector>

#include "runtime/speculative/draft_tree.h"
#include "tests/unit/runtime/engine/engine_harness.h"

namespace ghostd::runtime {
namespace {

using namespace engine_testing;

constexpr int kBlock = 16;

// A sequence's own KV: the prompt prefilled, blocks 0..n-1 of a fresh storage.
struct Seq {
  KvStorage kv;
  std::vector<int32_t> table;
};

Seq prefill(Model& m, const std::vector<int32_t>& prompt, int blocks) {
  auto kv = KvStorage::create(m, blocks, kBlock);
  REQUIRE(kv.ok());
  Seq s{std::move(*kv), {}};
  for (int b = 0; b < blocks; ++b) s.table.push_back(b);
  std::vector<SequenceInput> batch(1);
  batch[0].tokens = std::span<const int32_t>(prompt).first(prompt.size() - 1);  // the last is fed with the drafts
  batch[0].block_table = s.table;
  std::vector<float> logits;
  REQUIRE(m.reserve(Model::capacity_for(batch)).ok());
  Status st = m.forward(batch, s.kv, logits);
  REQUIRE_MESSAGE(st.ok(), st.message());
  return s;
}

std::vector<float> run(Model& m, Seq& s, const std::vector<int32_t>& tokens, int start,
                       const std::vector<int32_t>& parents = {}) {
  std::vector<SequenceInput> batch(1);
  batch[0].tokens = tokens;
  batch[0].start_pos = start;
  batch[0].block_table = s.table;
  batch[0].all_logits = true;
  batch[0].tree_parents = parents;
  std::vector<float> logits;
  REQUIRE(m.reserve(Model::capacity_for(batch)).ok());
  Status st = m.forward(batch, s.kv, logits);
  REQUIRE_MESSAGE(st.ok(), st.message());
  return logits;
}

bool same_bits(const float* a, const float* b, size_t n) {
  return std::memcmp(a, b, n * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("tree attention: every node's row equals the chain verify of its path, bitwise") {
  TestModel tm;
  if (!tm.ready) return;
  Model& m = tm.model();
  const size_t V = static_cast<size_t>(m.config().vocab_size);
  std::mt19937 rng(17);
  // Contexts on both sides of a block boundary, and trees whose nodes cross
  // from one attention span of the CPU backend into the next (256 positions).
  for (int prompt_len : {9, 16, 30, 253, 258}) {
    const int blocks = (prompt_len + 8) / kBlock + 1;
    CAPTURE(prompt_len);
    const std::vector<int32_t> prompt = random_prompt(rng, prompt_len);
    const int start = prompt_len - 1;
    // Fed: [last, n0..n6]; nodes: n0 <- root, n1 <- n0, n2 <- n1, n3 <- root,
    // n4 <- n3, n5 <- n0, n6 <- n4. Fed parents are node parents + 1.
    const std::vector<int32_t> node_parent{-1, 0, 1, -1, 3, 0, 4};
    std::vector<int32_t> fed{prompt.back()}, fed_parents{-1};
    for (size_t i = 0; i < node_parent.size(); ++i) {
      fed.push_back(static_cast<int32_t>(rng() % kVocab));
      fed_parents.push_back(node_parent[i] + 1);
    }
    Seq tree_seq = prefill(m, prompt, blocks);
    const std::vector<float> tree_rows = run(m, tree_seq, fed, start, fed_parents);
    REQUIRE(tree_rows.size() == fed.size() * V);
    for (size_t f = 0; f < fed.size(); ++f) {
      CAPTURE(f);
      // The chain from the root to fed token f.
      std::vector<int32_t> chain;
      for (int32_t at = static_cast<int32_t>(f); at >= 0; at = fed_parents[static_cast<size_t>(at)])
        chain.insert(chain.begin(), fed[static_cast<size_t>(at)]);
      Seq chain_seq = prefill(m, prompt, blocks);
      const std::vector<float> rows = run(m, chain_seq, chain, start);
      CHECK(same_bits(tree_rows.data() + f * V, rows.data() + (chain.size() - 1) * V, V));
    }
  }
}

TEST_CASE("tree attention: an accepted path moved into place decodes on like the chain") {
  TestModel tm;
  if (!tm.ready) return;
  Model& m = tm.model();
  const size_t V = static_cast<size_t>(m.config().vocab_size);
  std::mt19937 rng(23);
  const std::vector<int32_t> prompt = random_prompt(rng, 14);  // the tree crosses a block boundary
  const int start = 13;
  // Nodes: n0 <- root, n1 <- n0, n2 <- root, n3 <- n2, n4 <- n3. Accept the
  // second branch: n2, n3, n4 (fed 3, 4, 5) move to KV 14, 15, 16.
  std::vector<int32_t> fed{prompt.back()};
  for (int i = 0; i < 5; ++i) fed.push_back(static_cast<int32_t>(1 + rng() % (kVocab - 1)));
  const std::vector<int32_t> fed_parents{-1, 0, 1, 0, 3, 4};
  Seq tree_seq = prefill(m, prompt, 3);
  (void)run(m, tree_seq, fed, start, fed_parents);
  std::vector<int32_t> path;
  REQUIRE(fed_tree_path(fed_parents, fed, std::vector<int32_t>{fed[3], fed[4], fed[5]}, path));
  CHECK(path == std::vector<int32_t>{3, 4, 5});
  std::vector<KvBlockCopy> copies;
  auto slot = [&](int kv) { return tree_seq.table[static_cast<size_t>(kv / kBlock)] * kBlock + kv % kBlock; };
  for (size_t j = 0; j < path.size(); ++j)
    copies.push_back({slot(start + path[j]), slot(start + static_cast<int>(j) + 1)});
  m.copy_kv_slots(tree_seq.kv, copies);
  const int32_t next = 7;
  const std::vector<float> after_tree = run(m, tree_seq, {next}, start + 4);

  Seq chain_seq = prefill(m, prompt, 3);
  (void)run(m, chain_seq, {fed[0], fed[3], fed[4], fed[5]}, start);
  const std::vector<float> after_chain = run(m, chain_seq, {next}, start + 4);
  REQUIRE(after_tree.size() == V);
  CHECK(same_bits(after_tree.data(), after_chain.data(), V));
}

TEST_CASE("tree attention: a malformed tree is refused with an error") {
  TestModel tm;
  if (!tm.ready) return;
  Model& m = tm.model();
  Seq s = prefill(m, {1, 2, 3, 4}, 1);
  std::vector<SequenceInput> batch(1);
  const std::vector<int32_t> tokens{4, 5, 6};
  batch[0].tokens = tokens;
  batch[0].start_pos = 3;
  batch[0].block_table = s.table;
  std::vector<float> logits;
  for (const std::vector<int32_t>& bad : {std::vector<int32_t>{-1, 0}, std::vector<int32_t>{0, 0, 1},
                                          std::vector<int32_t>{-1, 2, 0}, std::vector<int32_t>{-1, 0, -1}}) {
    batch[0].tree_parents = bad;
    Status st = m.forward(batch, s.kv, logits);
    CHECK(!st.ok());
    CHECK(st.message().find("malformed draft tree") != std::string::npos);
  }
}

}  // namespace ghostd::runtime
