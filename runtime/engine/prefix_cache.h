// Prefix cache over full KV blocks, so a keystroke re-prefills only the
// tokens after the edit (DESIGN.md "Per-document KV reuse").
//
// Structure: hashed block chains. Each cached block is a node keyed by
// hash(parent hash, the block's tokens); a node also stores its tokens and its
// parent node, and lookups compare both, so a hash collision can never return a
// wrong prefix (only cost a comparison). Nodes keep child lists, which makes
// the chains a tree: that gives leaf-first eviction and lets `match` share a
// partially matching last block (the sequence copies it on its first append).
// We picked hashed chains over a token-level radix tree because KV is paged
// in whole blocks anyway: one hash probe per block, no edge splitting.
//
// Reference counts: every node holds one pool reference on its block; match()
// adds one reference per returned block for the caller; eviction releases the
// node's reference, which frees the block unless a sequence still holds it.
//
// Path invariant: whoever holds a cached node holds all its ancestors (match
// takes the whole path; insert only chains blocks the caller holds). So a node
// nobody but the cache holds has a subtree eviction can fully free.
//
// Retention: the `retained_documents` most recently active documents are
// evicted last; among the rest (and then among those) least recently used
// leaves go first. A node records the documents that used it, so documents
// sharing context (repo files, common headers) share blocks.
//
// Salt: every lookup and insert names a salt (the tenant; vLLM's cache_salt).
// Chains are rooted per salt, so a prefix cached under one salt is never
// matched under another: no tenant can learn from a cache hit's timing what
// another tenant's code holds.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "runtime/engine/kv_cache.h"

namespace ghostd::runtime {

struct PrefixMatch {
  std::vector<BlockId> blocks;  // the caller owns one reference on each
  int n_tokens = 0;             // tokens covered; the last block may be partial
};

// Thread-safety: not thread-safe; owned by the engine thread.
class PrefixCache {
 public:
  // hash(parent chain hash, block tokens) -> chain hash. Injectable so tests
  // can force collisions.
  using HashFn = std::function<uint64_t(uint64_t, std::span<const int32_t>)>;

  struct Config {
    int retained_documents = 4;
    bool partial_blocks = true;  // reuse a partially matching last block (by copy)
  };

  PrefixCache(BlockPool& pool, Config config, HashFn hash = default_hash);
  explicit PrefixCache(BlockPool& pool) : PrefixCache(pool, Config{}) {}
  ~PrefixCache();
  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;

  static uint64_t default_hash(uint64_t parent, std::span<const int32_t> tokens);

  // Longest cached prefix of `tokens` (at most tokens.size() tokens), touching
  // the matched nodes and `document_id`.
  PrefixMatch match(std::span<const int32_t> tokens, std::string_view document_id,
                    std::string_view salt = {});

  // Caches the full blocks of a sequence: blocks[i] holds tokens
  // [i * block_size, (i + 1) * block_size). Only whole blocks are cached;
  // blocks that are already cached (same chain) are touched, not duplicated;
  // insertion stops at a chain cached under a different block.
  // Returns the number of newly cached blocks.
  int insert(std::span<const int32_t> tokens, std::span<const BlockId> blocks,
             std::string_view document_id, std::string_view salt = {});

  // Marks a document active (e.g. a keystroke on it) without a lookup.
  void touch_document(std::string_view document_id);

  // Frees up to `n` blocks to the pool by dropping unreferenced cached leaves
  // in retention order. Returns the number of blocks returned to the pool.
  int evict(int n);
  // Blocks evict() could free right now (held only by the cache, chains of them).
  int num_evictable() const;
  // Drops every node (their blocks go back to the pool unless still held).
  void clear();

  int num_cached_blocks() const { return num_nodes_; }
  // Appends one entry per pool reference the cache holds (for validate()).
  void collect_held(std::vector<BlockId>& held) const;
  // Structural checks: parent/child links, hash index, one ref per node.
  Status validate() const;

 private:
  struct Node {
    uint64_t hash = 0;
    int32_t parent = -1;  // node index, -1 for a chain root
    BlockId block = -1;
    std::vector<int32_t> tokens;
    std::vector<int32_t> children;
    uint64_t last_used = 0;
    std::vector<int32_t> docs;  // recent documents that used it, newest last
    int32_t salt = 0;           // salt_index() of its chain
    bool live = false;
  };

  int32_t find_child(int32_t parent, int32_t salt, uint64_t hash,
                     std::span<const int32_t> tokens) const;
  int32_t doc_index(std::string_view document_id);
  int32_t salt_index(std::string_view salt);
  void touch(Node& node, int32_t doc);
  void remove_leaf(int32_t index);
  bool is_evictable_leaf(const Node& node) const;
  std::vector<uint8_t> retained_docs() const;

  BlockPool& pool_;
  Config config_;
  HashFn hash_;
  std::vector<Node> nodes_;
  std::vector<int32_t> free_nodes_;
  std::vector<int32_t> roots_;
  std::unordered_multimap<uint64_t, int32_t> by_hash_;
  int num_nodes_ = 0;
  uint64_t tick_ = 0;  // logical clock for LRU
  std::unordered_map<std::string, int32_t> doc_ids_;
  std::vector<uint64_t> doc_last_active_;
  std::unordered_map<std::string, int32_t> salt_ids_;  // "" is 0
};

}  // namespace ghostd::runtime
