#include "runtime/speculative/suffix_index.h"

#include <algorithm>
#include <cassert>
#include <iterator>

namespace ghostd::runtime {

namespace {

auto edge_less = [](const auto& edge, int32_t token) { return edge.token < token; };

}  // namespace

// ---- Trie -------------------------------------------------------------------

SuffixIndex::Trie::Trie() : nodes_(1) {}

uint32_t SuffixIndex::Trie::child_or_add(uint32_t node, int32_t token) {
  {
    auto& children = nodes_[node].children;
    auto it = std::lower_bound(children.begin(), children.end(), token, edge_less);
    if (it != children.end() && it->token == token) return it->node;
  }
  // Allocate before inserting the edge: growing nodes_ moves the children vectors.
  uint32_t child;
  if (!free_.empty()) {
    child = free_.back();
    free_.pop_back();
  } else {
    child = static_cast<uint32_t>(nodes_.size());
    nodes_.emplace_back();
  }
  auto& children = nodes_[node].children;
  auto it = std::lower_bound(children.begin(), children.end(), token, edge_less);
  children.insert(it, Edge{token, child});
  return child;
}

void SuffixIndex::Trie::insert(std::span<const int32_t> window) {
  ++nodes_[0].count;
  uint32_t node = 0;
  for (int32_t token : window) {
    node = child_or_add(node, token);
    ++nodes_[node].count;
  }
}

void SuffixIndex::Trie::remove(std::span<const int32_t> window) {
  assert(nodes_[0].count > 0);
  --nodes_[0].count;
  uint32_t node = 0;
  for (int32_t token : window) {
    auto& children = nodes_[node].children;
    auto it = std::lower_bound(children.begin(), children.end(), token, edge_less);
    assert(it != children.end() && it->token == token);
    const uint32_t child = it->node;
    if (--nodes_[child].count == 0) {
      // Counts never exceed the parent's, so everything below is this window
      // alone: free it whole.
      children.erase(it);
      free_subtree(child);
      break;
    }
    node = child;
  }
  if (nodes_[0].count == 0) {
    // Empty: give the storage back rather than keep a free list of it.
    assert(nodes_[0].children.empty());
    nodes_ = std::vector<Node>(1);
    free_ = {};
  }
}

void SuffixIndex::Trie::free_subtree(uint32_t node) {
  std::vector<uint32_t> stack{node};
  while (!stack.empty()) {
    const uint32_t n = stack.back();
    stack.pop_back();
    for (const Edge& e : nodes_[n].children) stack.push_back(e.node);
    nodes_[n].children = {};  // release the capacity, not just the size
    nodes_[n].count = 0;
    free_.push_back(n);
  }
}

int64_t SuffixIndex::Trie::find(std::span<const int32_t> path) const {
  uint32_t node = 0;
  for (int32_t token : path) {
    const auto& children = nodes_[node].children;
    auto it = std::lower_bound(children.begin(), children.end(), token, edge_less);
    if (it == children.end() || it->token != token) return -1;
    node = it->node;
  }
  return node;
}

const SuffixIndex::Trie::Edge* SuffixIndex::Trie::best_child(uint32_t node) const {
  const Edge* best = nullptr;
  // Children are in token order, so a strict > keeps the lower token on ties.
  for (const Edge& e : nodes_[node].children) {
    if (!best || nodes_[e.node].count > nodes_[best->node].count) best = &e;
  }
  return best;
}

void SuffixIndex::Trie::paths(PathCounts& out) const {
  std::vector<int32_t> path;
  // Explicit stack of (node, next child index) for a pre-order walk.
  std::vector<std::pair<uint32_t, size_t>> stack{{0, 0}};
  while (!stack.empty()) {
    auto& [node, next] = stack.back();
    if (next == nodes_[node].children.size()) {
      stack.pop_back();
      if (!path.empty()) path.pop_back();
      continue;
    }
    const Edge e = nodes_[node].children[next++];
    path.push_back(e.token);
    out.emplace_back(path, nodes_[e.node].count);
    stack.emplace_back(e.node, 0);
  }
}

Status SuffixIndex::Trie::validate(std::string_view name) const {
  const std::string where = "SuffixIndex trie '" + std::string(name) + "': ";
  std::vector<uint8_t> seen(nodes_.size(), 0);
  for (uint32_t f : free_) {
    if (f == 0 || f >= nodes_.size() || seen[f]) {
      return make_error(where + "free list holds bad or repeated node " + std::to_string(f));
    }
    seen[f] = 1;
    if (nodes_[f].count != 0 || !nodes_[f].children.empty()) {
      return make_error(where + "free node " + std::to_string(f) + " is not empty");
    }
  }
  size_t reached = 0;
  std::vector<uint32_t> stack{0};
  while (!stack.empty()) {
    const uint32_t n = stack.back();
    stack.pop_back();
    uint64_t sum = 0;
    const auto& children = nodes_[n].children;
    for (size_t i = 0; i < children.size(); ++i) {
      const uint32_t c = children[i].node;
      if (i > 0 && children[i - 1].token >= children[i].token) {
        return make_error(where + "children of node " + std::to_string(n) + " not sorted");
      }
      if (c == 0 || c >= nodes_.size() || seen[c]) {
        return make_error(where + "node " + std::to_string(n) + " has a bad or shared child " +
                          std::to_string(c));
      }
      seen[c] = 1;
      if (nodes_[c].count == 0) {
        return make_error(where + "node " + std::to_string(c) + " is reachable with count 0");
      }
      sum += nodes_[c].count;
      stack.push_back(c);
      ++reached;
    }
    if (sum > nodes_[n].count) {
      return make_error(where + "node " + std::to_string(n) + " counts " +
                        std::to_string(nodes_[n].count) + " but its children " +
                        std::to_string(sum));
    }
  }
  if (reached != live_nodes()) {
    return make_error(where + std::to_string(reached) + " nodes reachable, " +
                      std::to_string(live_nodes()) + " live");
  }
  return {};
}

// ---- SuffixIndex ------------------------------------------------------------

SuffixIndex::SuffixIndex(SuffixIndexConfig config) : config_(config) {
  // Degenerate settings are clamped to their nearest meaningful value.
  config_.max_depth = std::max(1, config_.max_depth);
  config_.max_documents = std::max(1, config_.max_documents);
  config_.max_completions = std::max(0, config_.max_completions);
  config_.max_tokens_per_document = std::max<size_t>(1, config_.max_tokens_per_document);
  config_.min_match = std::max(1, config_.min_match);
}

SuffixIndex::Document& SuffixIndex::touch(std::string_view key) {
  if (auto found = by_key_.find(key); found != by_key_.end()) {
    lru_.splice(lru_.begin(), lru_, found->second);
    return lru_.front();
  }
  lru_.emplace_front();
  lru_.front().key = std::string(key);
  by_key_.emplace(lru_.front().key, lru_.begin());
  while (lru_.size() > static_cast<size_t>(config_.max_documents)) erase(std::prev(lru_.end()));
  return lru_.front();
}

void SuffixIndex::index_windows(Document& doc, std::span<const int32_t> seq, size_t begin,
                                size_t end, bool insert) {
  const size_t depth = static_cast<size_t>(config_.max_depth);
  for (size_t i = begin; i < end; ++i) {
    const auto window = seq.subspan(i, std::min(depth, seq.size() - i));
    if (insert) {
      doc.trie.insert(window);
      global_.insert(window);
    } else {
      doc.trie.remove(window);
      global_.remove(window);
    }
  }
}

void SuffixIndex::update_document(std::string_view key, std::span<const int32_t> tokens) {
  if (tokens.size() > config_.max_tokens_per_document) {
    tokens = tokens.last(config_.max_tokens_per_document);
  }
  Document& doc = touch(key);
  const std::span<const int32_t> old = doc.prompt;
  const size_t n = old.size();
  const size_t m = tokens.size();
  const size_t prefix = static_cast<size_t>(
      std::mismatch(old.begin(), old.end(), tokens.begin(), tokens.end()).first - old.begin());
  if (prefix == n && n == m) return;
  size_t suffix = 0;
  const size_t max_suffix = std::min(n, m) - prefix;
  while (suffix < max_suffix && old[n - 1 - suffix] == tokens[m - 1 - suffix]) ++suffix;
  // A window starting at i reads [i, i + max_depth): it is unchanged when it
  // ends inside the common prefix, or starts inside the common suffix (both
  // then run to the sequence's end). Everything between is re-indexed.
  const size_t reach = static_cast<size_t>(config_.max_depth) - 1;
  const size_t first = prefix > reach ? prefix - reach : 0;
  index_windows(doc, old, first, n - suffix, false);
  index_windows(doc, tokens, first, m - suffix, true);
  doc.prompt.assign(tokens.begin(), tokens.end());
  enforce_token_budget(doc);
}

void SuffixIndex::add_completion(std::string_view key, std::span<const int32_t> tokens) {
  if (tokens.empty()) return;
  if (tokens.size() > config_.max_tokens_per_document) {
    tokens = tokens.last(config_.max_tokens_per_document);
  }
  Document& doc = touch(key);
  doc.completions.emplace_back(tokens.begin(), tokens.end());
  doc.completion_tokens += tokens.size();
  index_windows(doc, doc.completions.back(), 0, tokens.size(), true);
  while (doc.completions.size() > static_cast<size_t>(config_.max_completions)) {
    drop_oldest_completion(doc);
  }
  enforce_token_budget(doc);
}

void SuffixIndex::drop_oldest_completion(Document& doc) {
  const std::vector<int32_t>& oldest = doc.completions.front();
  index_windows(doc, oldest, 0, oldest.size(), false);
  doc.completion_tokens -= oldest.size();
  doc.completions.pop_front();
}

void SuffixIndex::enforce_token_budget(Document& doc) {
  // The prompt is already truncated to the budget; completions give way first
  // because the prompt is the freshest view of the file.
  while (!doc.completions.empty() &&
         doc.prompt.size() + doc.completion_tokens > config_.max_tokens_per_document) {
    drop_oldest_completion(doc);
  }
}

void SuffixIndex::erase(DocumentList::iterator it) {
  // The document's own trie goes with it; only the global trie needs its
  // windows taken out one by one.
  const size_t depth = static_cast<size_t>(config_.max_depth);
  auto remove_all = [&](std::span<const int32_t> seq) {
    for (size_t i = 0; i < seq.size(); ++i) {
      global_.remove(seq.subspan(i, std::min(depth, seq.size() - i)));
    }
  };
  remove_all(it->prompt);
  for (const auto& completion : it->completions) remove_all(completion);
  by_key_.erase(it->key);
  lru_.erase(it);
}

void SuffixIndex::remove_document(std::string_view key) {
  if (auto found = by_key_.find(key); found != by_key_.end()) erase(found->second);
}

SuffixProposal SuffixIndex::propose(std::string_view key, std::span<const int32_t> context,
                                    int max_tokens) const {
  if (max_tokens <= 0 || context.empty()) return {};
  if (auto found = by_key_.find(key); found != by_key_.end()) {
    SuffixProposal own = propose_from(found->second->trie, context, max_tokens);
    if (!own.tokens.empty()) return own;
  }
  return propose_from(global_, context, max_tokens);
}

SuffixProposal SuffixIndex::propose_from(const Trie& trie, std::span<const int32_t> context,
                                         int max_tokens) const {
  const int depth = config_.max_depth;
  const auto window = context.last(std::min(context.size(), static_cast<size_t>(depth)));
  SuffixProposal best;
  double best_score = 0;
  std::vector<int32_t> draft;
  for (int len = static_cast<int>(window.size()); len >= config_.min_match; --len) {
    const int64_t match = trie.find(window.last(static_cast<size_t>(len)));
    if (match < 0) continue;
    // Nodes deeper than max_depth do not exist: a long match leaves less room.
    const int budget = std::min(max_tokens, depth - len);
    auto node = static_cast<uint32_t>(match);
    double prob = 1;
    double score = 0;
    draft.clear();
    while (static_cast<int>(draft.size()) < budget) {
      const Trie::Edge* next = trie.best_child(node);
      if (!next) break;
      const double p = prob * trie.count(next->node) / trie.count(node);
      if (p < config_.min_token_prob) break;
      draft.push_back(next->token);
      score += p;
      prob = p;
      node = next->node;
    }
    if (!draft.empty() && score > best_score) {
      best_score = score;
      best.tokens = draft;
      best.score = static_cast<float>(score);
      best.match_len = len;
    }
    if (best_score >= max_tokens) break;  // every token certain: nothing can beat it
  }
  return best;
}

size_t SuffixIndex::num_nodes() const {
  size_t total = global_.live_nodes();
  for (const Document& doc : lru_) total += doc.trie.live_nodes();
  return total;
}

size_t SuffixIndex::num_documents() const {
  return lru_.size();
}

SuffixIndex::PathCounts SuffixIndex::document_paths(std::string_view key) const {
  PathCounts out;
  if (auto found = by_key_.find(key); found != by_key_.end()) found->second->trie.paths(out);
  return out;
}

SuffixIndex::PathCounts SuffixIndex::global_paths() const {
  PathCounts out;
  global_.paths(out);
  return out;
}

Status SuffixIndex::validate() const {
  GHOSTD_TRY_STATUS(global_.validate("global"));
  if (lru_.size() != by_key_.size() || lru_.size() > static_cast<size_t>(config_.max_documents)) {
    return make_error("SuffixIndex: " + std::to_string(lru_.size()) + " documents, " +
                      std::to_string(by_key_.size()) + " keys, limit " +
                      std::to_string(config_.max_documents));
  }
  uint64_t windows = 0;
  for (const Document& doc : lru_) {
    GHOSTD_TRY_STATUS(doc.trie.validate(doc.key));
    size_t completion_tokens = 0;
    for (const auto& c : doc.completions) completion_tokens += c.size();
    const size_t held = doc.prompt.size() + completion_tokens;
    if (completion_tokens != doc.completion_tokens ||
        doc.completions.size() > static_cast<size_t>(config_.max_completions) ||
        (held > config_.max_tokens_per_document && !doc.completions.empty()) ||
        doc.prompt.size() > config_.max_tokens_per_document) {
      return make_error("SuffixIndex: document '" + doc.key + "' holds " + std::to_string(held) +
                        " tokens in " + std::to_string(doc.completions.size()) +
                        " completions, over its limits");
    }
    // One window per token position.
    if (doc.trie.root_count() != held) {
      return make_error("SuffixIndex: document '" + doc.key + "' trie counts " +
                        std::to_string(doc.trie.root_count()) + " windows for " +
                        std::to_string(held) + " tokens");
    }
    windows += held;
  }
  if (global_.root_count() != windows) {
    return make_error("SuffixIndex: global trie counts " + std::to_string(global_.root_count()) +
                      " windows, documents " + std::to_string(windows));
  }
  return {};
}

}  // namespace ghostd::runtime
