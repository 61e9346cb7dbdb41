// SuffixIndex::Trie: the counted token trie behind SuffixIndex (suffix_index.h
// declares it): insertion and removal of windows, subtraction, lookups,
// and its structural check.
#include "runtime/speculative/suffix_index.h"

#include <algorithm>
#include <cassert>
#include <memory>

namespace ghostd::runtime {

namespace {

auto edge_less = [](const auto& edge, int32_t token) { return edge.token < token; };

}  // namespace

SuffixIndex::Trie::Trie() {
  allocate();
}

const SuffixIndex::Trie::Edge* SuffixIndex::Trie::child(uint32_t node, int32_t token) const {
  const auto& children = slot(node).children;
  auto it = std::lower_bound(children.begin(), children.end(), token, edge_less);
  return it != children.end() && it->token == token ? &*it : nullptr;
}

uint32_t SuffixIndex::Trie::allocate() {
  if (free_.empty()) {
    if (size_ == chunks_.size() * kChunk) chunks_.push_back(std::make_unique<Node[]>(kChunk));
    return size_++;
  }
  const uint32_t node = free_.back();
  free_.pop_back();
  return node;
}

uint32_t SuffixIndex::Trie::add_child(uint32_t node, int32_t token, uint32_t count) {
  // Allocate first: it may reuse a free slot (never moves nodes).
  const uint32_t c = allocate();
  slot(c).count = count;
  auto& children = slot(node).children;
  children.insert(std::lower_bound(children.begin(), children.end(), token, edge_less),
                  Edge{token, c});
  return c;
}

void SuffixIndex::Trie::release(uint32_t node) {
  slot(node).count = 0;
  slot(node).children = {};  // release the capacity, not just the size
  slot(node).tail = {};
  free_.push_back(node);
}

void SuffixIndex::Trie::insert(std::span<const int32_t> window) {
  ++slot(0).count;
  uint32_t node = 0;
  for (size_t k = 0; k < window.size(); ++k) {
    const Edge* e = child(node, window[k]);
    if (!e) {
      const uint32_t leaf = add_child(node, window[k], 1);
      slot(leaf).tail.assign(window.begin() + static_cast<std::ptrdiff_t>(k + 1), window.end());
      return;
    }
    const uint32_t c = e->node;
    if (slot(c).count++ >= 2) {
      node = c;
      continue;
    }
    // A leaf met a second window: the common part of the two tails becomes
    // count-2 nodes, and each remainder a leaf of its own.
    const std::vector<int32_t> old_tail = std::move(slot(c).tail);
    slot(c).tail = {};
    const auto rest = window.subspan(k + 1);
    size_t j = 0;
    node = c;
    while (j < old_tail.size() && j < rest.size() && old_tail[j] == rest[j]) {
      node = add_child(node, rest[j], 2);
      ++j;
    }
    if (j < old_tail.size()) {
      const uint32_t leaf = add_child(node, old_tail[j], 1);
      slot(leaf).tail.assign(old_tail.begin() + static_cast<std::ptrdiff_t>(j + 1), old_tail.end());
    }
    if (j < rest.size()) {
      const uint32_t leaf = add_child(node, rest[j], 1);
      slot(leaf).tail.assign(rest.begin() + static_cast<std::ptrdiff_t>(j + 1), rest.end());
    }
    return;
  }
}

void SuffixIndex::Trie::remove(std::span<const int32_t> window) {
  assert(slot(0).count > 0);
  --slot(0).count;
  if (!window.empty()) remove_below(0, window.front(), window.subspan(1));
  reset_if_empty();
}

void SuffixIndex::Trie::remove_below(uint32_t start, int32_t first, std::span<const int32_t> rest) {
  uint32_t node = start;
  uint32_t fold = 0;  // the highest node below start that drops to count 1 (0: none)
  for (size_t k = 0; k <= rest.size(); ++k) {
    const int32_t token = k == 0 ? first : rest[k - 1];
    auto& children = slot(node).children;
    auto it = std::lower_bound(children.begin(), children.end(), token, edge_less);
    assert(it != children.end() && it->token == token);
    const uint32_t c = it->node;
    if (slot(c).count == 1) {
      // This window's own leaf: the rest of the window is its tail.
      assert(std::equal(slot(c).tail.begin(), slot(c).tail.end(), rest.begin() + k, rest.end()));
      children.erase(it);
      release(c);
      break;
    }
    if (--slot(c).count == 1 && fold == 0) fold = c;
    node = c;
  }
  if (fold != 0) fold_into_leaf(fold);
}

void SuffixIndex::Trie::fold_into_leaf(uint32_t node) {
  // One window is left below `node`: a chain of count-1 nodes, perhaps ending
  // in a leaf. It becomes `node`'s tail so the trie matches a rebuild.
  std::vector<int32_t> tail;
  uint32_t at = node;
  while (!slot(at).children.empty()) {
    assert(slot(at).children.size() == 1);
    const Edge e = slot(at).children.front();
    tail.push_back(e.token);
    tail.insert(tail.end(), slot(e.node).tail.begin(), slot(e.node).tail.end());
    if (at != node) release(at);
    at = e.node;
  }
  if (at != node) release(at);
  slot(node).children = {};
  slot(node).tail = std::move(tail);
}

void SuffixIndex::Trie::subtract(const Trie& other) {
  assert(slot(0).count >= other.slot(0).count);
  slot(0).count -= other.slot(0).count;
  subtract_below(0, other, 0);
  reset_if_empty();
}

void SuffixIndex::Trie::subtract_below(uint32_t node, const Trie& other, uint32_t other_node) {
  // Precondition: `node`'s count already went down by `other_node`'s. Where
  // `other` has a node of count >= 2 this trie has one too (its count is at
  // least as high), so the two walk in step down to other's leaves.
  for (const Edge& oe : other.slot(other_node).children) {
    const Node& on = other.slot(oe.node);
    if (on.count == 1) {
      remove_below(node, oe.token, on.tail);
      continue;
    }
    const Edge* e = child(node, oe.token);
    assert(e && slot(e->node).count >= on.count);
    const uint32_t c = e->node;
    slot(c).count -= on.count;
    subtract_below(c, other, oe.node);
    if (slot(c).count == 0) {
      assert(slot(c).children.empty());
      auto& children = slot(node).children;
      children.erase(std::lower_bound(children.begin(), children.end(), oe.token, edge_less));
      release(c);
    } else if (slot(c).count == 1) {
      fold_into_leaf(c);
    }
  }
}

void SuffixIndex::Trie::reset_if_empty() {
  if (slot(0).count != 0) return;
  // Empty: give the storage back rather than keep a free list of it.
  assert(slot(0).children.empty());
  chunks_.clear();
  free_ = {};
  size_ = 0;
  allocate();
}

bool SuffixIndex::Trie::find(std::span<const int32_t> path, Cursor& at) const {
  at = Cursor{};
  for (int32_t token : path) {
    const Node& n = slot(at.node);
    if (at.offset < n.tail.size()) {
      if (n.tail[at.offset] != token) return false;
      ++at.offset;
      continue;
    }
    const Edge* e = child(at.node, token);
    if (!e) return false;
    at = Cursor{e->node, 0};
  }
  return true;
}

bool SuffixIndex::Trie::next(Cursor& at, int32_t& token, double& prob) const {
  const Node& n = slot(at.node);
  if (at.offset < n.tail.size()) {
    token = n.tail[at.offset++];
    prob = 1;  // a tail is one window: it always continues the same way
    return true;
  }
  // Children are in token order, so a strict > keeps the lower token on ties.
  const Edge* best = nullptr;
  for (const Edge& e : n.children) {
    if (!best || slot(e.node).count > slot(best->node).count) best = &e;
  }
  if (!best) return false;
  token = best->token;
  prob = static_cast<double>(slot(best->node).count) / n.count;
  at = Cursor{best->node, 0};
  return true;
}

void SuffixIndex::Trie::branches(const Cursor& at, std::vector<Branch>& out) const {
  out.clear();
  const Node& n = slot(at.node);
  if (at.offset < n.tail.size()) {
    out.push_back({n.tail[at.offset], Cursor{at.node, at.offset + 1}});
    return;
  }
  for (const Edge& e : n.children) out.push_back({e.token, Cursor{e.node, 0}});
}

size_t SuffixIndex::Trie::memory_bytes() const {
  size_t bytes = free_.capacity() * sizeof(uint32_t);
  bytes += chunks_.size() * kChunk * sizeof(Node);
  for (uint32_t i = 0; i < size_; ++i) {
    const Node& n = slot(i);
    bytes += n.children.capacity() * sizeof(Edge) + n.tail.capacity() * sizeof(int32_t);
  }
  return bytes;
}

void SuffixIndex::Trie::paths(PathCounts& out) const {
  std::vector<int32_t> path;
  // Explicit stack of (node, next child index) for a pre-order walk; a tail
  // is listed as the chain of count-1 nodes it stands for.
  std::vector<std::pair<uint32_t, size_t>> stack{{0, 0}};
  while (!stack.empty()) {
    auto& [node, next] = stack.back();
    if (next == slot(node).children.size()) {
      path.resize(path.size() - (node == 0 ? 0 : 1 + slot(node).tail.size()));
      stack.pop_back();
      continue;
    }
    const Edge e = slot(node).children[next++];
    const Node& c = slot(e.node);
    path.push_back(e.token);
    out.emplace_back(path, c.count);
    for (int32_t t : c.tail) {
      path.push_back(t);
      out.emplace_back(path, c.count);
    }
    stack.emplace_back(e.node, 0);
  }
}

Status SuffixIndex::Trie::validate(std::string_view name, int max_depth) const {
  const std::string where = "SuffixIndex trie '" + std::string(name) + "': ";
  std::vector<uint8_t> seen(size_, 0);
  for (uint32_t f : free_) {
    if (f == 0 || f >= size_ || seen[f]) {
      return make_error(where + "free list holds bad or repeated node " + std::to_string(f));
    }
    seen[f] = 1;
    if (slot(f).count != 0 || !slot(f).children.empty() || !slot(f).tail.empty()) {
      return make_error(where + "free node " + std::to_string(f) + " is not empty");
    }
  }
  if (!slot(0).tail.empty()) return make_error(where + "the root has a tail");
  size_t reached = 0;
  std::vector<std::pair<uint32_t, size_t>> stack{{0, 0}};  // node, depth
  while (!stack.empty()) {
    const auto [n, depth] = stack.back();
    stack.pop_back();
    const Node& node = slot(n);
    const std::string id = "node " + std::to_string(n) + " (depth " + std::to_string(depth) + ")";
    if (n != 0 && node.count == 1 && !node.children.empty()) {
      return make_error(where + id + " has count " + std::to_string(node.count) + " and " +
                        std::to_string(node.children.size()) + " children");
    }
    if (node.count != 1 && !node.tail.empty()) return make_error(where + id + " has a tail");
    if (depth + node.tail.size() > static_cast<size_t>(max_depth)) {
      return make_error(where + id + " reaches below max_depth");
    }
    uint64_t sum = 0;
    for (size_t i = 0; i < node.children.size(); ++i) {
      const uint32_t c = node.children[i].node;
      if (i > 0 && node.children[i - 1].token >= node.children[i].token) {
        return make_error(where + id + ": children not sorted");
      }
      if (c == 0 || c >= size_ || seen[c]) {
        return make_error(where + id + " has a bad or shared child " + std::to_string(c));
      }
      seen[c] = 1;
      if (slot(c).count == 0) {
        return make_error(where + "node " + std::to_string(c) + " is reachable with count 0");
      }
      sum += slot(c).count;
      stack.emplace_back(c, depth + 1);
      ++reached;
    }
    if (sum > node.count) {
      return make_error(where + id + " counts " + std::to_string(node.count) +
                        " but its children " + std::to_string(sum));
    }
  }
  if (reached != live_nodes()) {
    return make_error(where + std::to_string(reached) + " nodes reachable, " +
                      std::to_string(live_nodes()) + " live");
  }
  return {};
}

}  // namespace ghostd::runtime
