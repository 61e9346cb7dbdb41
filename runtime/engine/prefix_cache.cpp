#include "runtime/engine/prefix_cache.h"

#include <algorithm>
#include <cassert>
#include <queue>
#include <tuple>

namespace ghostd::runtime {

namespace {
constexpr size_t kDocsPerNode = 4;  // enough to tell "shared by active docs" apart
}  // namespace

PrefixCache::PrefixCache(BlockPool& pool, Config config, HashFn hash)
    : pool_(pool), config_(config), hash_(std::move(hash)) {}

PrefixCache::~PrefixCache() {
  clear();
}

uint64_t PrefixCache::default_hash(uint64_t parent, std::span<const int32_t> tokens) {
  // splitmix64-style mixing of each token into the parent's hash.
  uint64_t h = parent ^ 0x9e3779b97f4a7c15ull;
  for (int32_t t : tokens) {
    h ^= static_cast<uint32_t>(t);
    h += 0x9e3779b97f4a7c15ull;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    h ^= h >> 31;
  }
  return h;
}

int32_t PrefixCache::find_child(int32_t parent, int32_t salt, uint64_t hash,
                                std::span<const int32_t> tokens) const {
  auto [lo, hi] = by_hash_.equal_range(hash);
  for (auto it = lo; it != hi; ++it) {
    const Node& n = nodes_[it->second];
    // The hash only narrows the search; identity is (parent node or salt, tokens).
    if (n.parent == parent && n.salt == salt &&
        std::equal(n.tokens.begin(), n.tokens.end(), tokens.begin(), tokens.end())) {
      return it->second;
    }
  }
  return -1;
}

int32_t PrefixCache::doc_index(std::string_view document_id) {
  auto it = doc_ids_.find(std::string(document_id));
  if (it != doc_ids_.end()) return it->second;
  int32_t idx = static_cast<int32_t>(doc_last_active_.size());
  doc_ids_.emplace(std::string(document_id), idx);
  doc_last_active_.push_back(0);
  return idx;
}

int32_t PrefixCache::salt_index(std::string_view salt) {
  if (salt.empty()) return 0;
  auto it = salt_ids_.find(std::string(salt));
  if (it != salt_ids_.end()) return it->second;
  const auto idx = static_cast<int32_t>(salt_ids_.size() + 1);
  salt_ids_.emplace(std::string(salt), idx);
  return idx;
}

void PrefixCache::touch_document(std::string_view document_id) {
  doc_last_active_[doc_index(document_id)] = ++tick_;
}

void PrefixCache::touch(Node& node, int32_t doc) {
  node.last_used = tick_;
  auto it = std::find(node.docs.begin(), node.docs.end(), doc);
  if (it != node.docs.end()) node.docs.erase(it);
  node.docs.push_back(doc);
  if (node.docs.size() > kDocsPerNode) node.docs.erase(node.docs.begin());
}

PrefixMatch PrefixCache::match(std::span<const int32_t> tokens, std::string_view document_id,
                               std::string_view salt_name) {
  const int32_t doc = doc_index(document_id);
  const int32_t salt = salt_index(salt_name);
  doc_last_active_[doc] = ++tick_;
  const size_t bs = static_cast<size_t>(pool_.block_size());
  PrefixMatch m;
  int32_t parent = -1;
  uint64_t h = static_cast<uint64_t>(salt);
  size_t i = 0;
  for (; i + bs <= tokens.size(); i += bs) {
    auto blk = tokens.subspan(i, bs);
    uint64_t hh = hash_(h, blk);
    int32_t c = find_child(parent, salt, hh, blk);
    if (c < 0) break;
    touch(nodes_[c], doc);
    pool_.add_ref(nodes_[c].block);
    m.blocks.push_back(nodes_[c].block);
    parent = c;
    h = hh;
  }
  m.n_tokens = static_cast<int>(i);
  if (!config_.partial_blocks || i >= tokens.size()) return m;
  // Partial last block: the child sharing the longest run of leading tokens.
  auto rest = tokens.subspan(i, std::min(bs, tokens.size() - i));
  const std::vector<int32_t>& children = parent < 0 ? roots_ : nodes_[parent].children;
  int32_t best = -1;
  size_t best_len = 0;
  for (int32_t c : children) {
    if (nodes_[c].salt != salt) continue;
    const auto& t = nodes_[c].tokens;
    size_t len = std::mismatch(rest.begin(), rest.end(), t.begin()).first - rest.begin();
    if (len > best_len) {
      best = c;
      best_len = len;
    }
  }
  if (best >= 0) {
    touch(nodes_[best], doc);
    pool_.add_ref(nodes_[best].block);
    m.blocks.push_back(nodes_[best].block);
    m.n_tokens += static_cast<int>(best_len);
  }
  return m;
}

int PrefixCache::insert(std::span<const int32_t> tokens, std::span<const BlockId> blocks,
                        std::string_view document_id, std::string_view salt_name) {
  const int32_t doc = doc_index(document_id);
  const int32_t salt = salt_index(salt_name);
  doc_last_active_[doc] = ++tick_;
  const size_t bs = static_cast<size_t>(pool_.block_size());
  const size_t n_full = std::min(tokens.size() / bs, blocks.size());
  int added = 0;
  int32_t parent = -1;
  uint64_t h = static_cast<uint64_t>(salt);
  for (size_t b = 0; b < n_full; ++b) {
    auto blk = tokens.subspan(b * bs, bs);
    uint64_t hh = hash_(h, blk);
    int32_t c = find_child(parent, salt, hh, blk);
    if (c < 0) {
      if (free_nodes_.empty()) {
        c = static_cast<int32_t>(nodes_.size());
        nodes_.emplace_back();
      } else {
        c = free_nodes_.back();
        free_nodes_.pop_back();
      }
      Node& n = nodes_[c];
      n.hash = hh;
      n.parent = parent;
      n.block = blocks[b];
      n.tokens.assign(blk.begin(), blk.end());
      n.children.clear();
      n.docs.clear();
      n.salt = salt;
      n.live = true;
      pool_.add_ref(blocks[b]);
      (parent < 0 ? roots_ : nodes_[parent].children).push_back(c);
      by_hash_.emplace(hh, c);
      ++num_nodes_;
      ++added;
    }
    touch(nodes_[c], doc);
    // Same tokens cached in another block (two jobs prefilled it at once): stop
    // here. Extending the chain under a block the caller does not hold would
    // let a held node hang below an unheld one, which eviction could not free.
    if (nodes_[c].block != blocks[b]) break;
    parent = c;
    h = hh;
  }
  return added;
}

bool PrefixCache::is_evictable_leaf(const Node& node) const {
  return node.live && node.children.empty() && pool_.ref_count(node.block) == 1;
}

std::vector<uint8_t> PrefixCache::retained_docs() const {
  std::vector<uint8_t> retained(doc_last_active_.size(), 0);
  std::vector<std::pair<uint64_t, int32_t>> order;
  for (size_t d = 0; d < doc_last_active_.size(); ++d) {
    order.emplace_back(doc_last_active_[d], static_cast<int32_t>(d));
  }
  size_t k = std::min(order.size(), static_cast<size_t>(std::max(0, config_.retained_documents)));
  std::partial_sort(order.begin(), order.begin() + k, order.end(), std::greater<>());
  for (size_t i = 0; i < k; ++i) retained[order[i].second] = 1;
  return retained;
}

void PrefixCache::remove_leaf(int32_t index) {
  Node& n = nodes_[index];
  assert(n.live && n.children.empty());
  auto [lo, hi] = by_hash_.equal_range(n.hash);
  for (auto it = lo; it != hi; ++it) {
    if (it->second == index) {
      by_hash_.erase(it);
      break;
    }
  }
  auto& siblings = n.parent < 0 ? roots_ : nodes_[n.parent].children;
  auto it = std::find(siblings.begin(), siblings.end(), index);
  assert(it != siblings.end());
  *it = siblings.back();
  siblings.pop_back();
  pool_.release(n.block);
  n.live = false;
  n.tokens.clear();
  n.docs.clear();
  free_nodes_.push_back(index);
  --num_nodes_;
}

int PrefixCache::evict(int n) {
  if (n <= 0 || num_nodes_ == 0) return 0;
  const std::vector<uint8_t> retained = retained_docs();
  auto is_retained = [&](const Node& node) {
    return std::any_of(node.docs.begin(), node.docs.end(),
                       [&](int32_t d) { return retained[d] != 0; });
  };
  // Min-heap on (retained, last_used): unretained LRU leaves first.
  using Entry = std::tuple<int, uint64_t, int32_t>;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> heap;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (is_evictable_leaf(nodes_[i])) {
      heap.emplace(is_retained(nodes_[i]) ? 1 : 0, nodes_[i].last_used, static_cast<int32_t>(i));
    }
  }
  int freed = 0;
  while (freed < n && !heap.empty()) {
    int32_t idx = std::get<2>(heap.top());
    heap.pop();
    int32_t parent = nodes_[idx].parent;
    remove_leaf(idx);
    ++freed;
    if (parent >= 0 && is_evictable_leaf(nodes_[parent])) {
      heap.emplace(is_retained(nodes_[parent]) ? 1 : 0, nodes_[parent].last_used, parent);
    }
  }
  return freed;
}

int PrefixCache::num_evictable() const {
  // A node can go once its whole subtree can: post-order over the forest.
  int count = 0;
  std::vector<std::pair<int32_t, size_t>> stack;
  std::vector<uint8_t> ok(nodes_.size(), 0);
  for (int32_t r : roots_) {
    stack.emplace_back(r, 0);
    while (!stack.empty()) {
      auto& [idx, next] = stack.back();
      const Node& node = nodes_[idx];
      if (next < node.children.size()) {
        int32_t c = node.children[next++];
        stack.emplace_back(c, 0);
        continue;
      }
      bool all = pool_.ref_count(node.block) == 1;
      for (int32_t c : node.children) all = all && ok[c];
      ok[idx] = all ? 1 : 0;
      count += all ? 1 : 0;
      stack.pop_back();
    }
  }
  return count;
}

void PrefixCache::clear() {
  for (Node& n : nodes_) {
    if (n.live) pool_.release(n.block);
  }
  nodes_.clear();
  free_nodes_.clear();
  roots_.clear();
  by_hash_.clear();
  num_nodes_ = 0;
}

void PrefixCache::collect_held(std::vector<BlockId>& held) const {
  for (const Node& n : nodes_) {
    if (n.live) held.push_back(n.block);
  }
}

Status PrefixCache::validate() const {
  const size_t bs = static_cast<size_t>(pool_.block_size());
  int live = 0;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const Node& n = nodes_[i];
    if (!n.live) continue;
    ++live;
    const std::string where = "PrefixCache: node " + std::to_string(i);
    if (n.tokens.size() != bs) return make_error(where + " holds a partial block");
    if (pool_.ref_count(n.block) < 1) return make_error(where + " holds a free block");
    uint64_t parent_hash = static_cast<uint64_t>(n.salt);
    const std::vector<int32_t>* siblings = &roots_;
    if (n.parent >= 0) {
      const Node& p = nodes_[n.parent];
      if (!p.live) return make_error(where + " has a dead parent");
      if (p.salt != n.salt) return make_error(where + " has a salt other than its parent's");
      parent_hash = p.hash;
      siblings = &p.children;
    }
    if (std::count(siblings->begin(), siblings->end(), static_cast<int32_t>(i)) != 1) {
      return make_error(where + " is not listed once among its parent's children");
    }
    if (hash_(parent_hash, n.tokens) != n.hash) return make_error(where + " has a stale hash");
    auto [lo, hi] = by_hash_.equal_range(n.hash);
    if (std::none_of(lo, hi,
                     [&](const auto& kv) { return kv.second == static_cast<int32_t>(i); })) {
      return make_error(where + " is missing from the hash index");
    }
    for (int32_t c : n.children) {
      if (!nodes_[c].live || nodes_[c].parent != static_cast<int32_t>(i)) {
        return make_error(where + " lists a child that does not point back");
      }
    }
  }
  if (live != num_nodes_ || by_hash_.size() != static_cast<size_t>(live)) {
    return make_error("PrefixCache: node count " + std::to_string(num_nodes_) + ", live " +
                      std::to_string(live) + ", indexed " + std::to_string(by_hash_.size()));
  }
  return {};
}

}  // namespace ghostd::runtime
