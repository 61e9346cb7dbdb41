#include "runtime/speculative/suffix_index.h"

#include <algorithm>
#include <cassert>
#include <iterator>
#include <memory>

namespace ghostd::runtime {

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

namespace {

// A run of tokens the old and new prompt share: old[old_at, old_at + len)
// equals new[new_at, new_at + len).
struct SharedRun {
  size_t old_at = 0;
  size_t new_at = 0;
  size_t len = 0;
};

// Between the common prefix and suffix, two edits (the prompt builder
// dropping lines from the prefix window's front while the user types further
// down, or a paste plus a keystroke) leave a long shared run: find it by
// looking for the first max_depth tokens of either middle in the other.
SharedRun middle_run(std::span<const int32_t> old_mid, std::span<const int32_t> new_mid,
                     size_t depth) {
  SharedRun best;
  if (old_mid.size() < 2 * depth || new_mid.size() < 2 * depth) return best;
  auto try_probe = [&](std::span<const int32_t> probe_in, std::span<const int32_t> search_in,
                       bool probe_is_new) {
    const auto probe = probe_in.first(depth);
    // From offset 1: at 0 the common prefix would have been longer. Repeated
    // code can match the probe early and briefly: a few occurrences are tried.
    auto from = search_in.begin() + 1;
    for (int tries = 0; tries < 4; ++tries) {
      const auto it = std::search(from, search_in.end(), probe.begin(), probe.end());
      if (it == search_in.end()) return;
      const size_t at = static_cast<size_t>(it - search_in.begin());
      size_t len = depth;
      while (at + len < search_in.size() && len < probe_in.size() &&
             search_in[at + len] == probe_in[len]) {
        ++len;
      }
      if (len > best.len) best = probe_is_new ? SharedRun{at, 0, len} : SharedRun{0, at, len};
      from = it + 1;
    }
  };
  try_probe(new_mid, old_mid, true);   // a block was deleted from the old
  try_probe(old_mid, new_mid, false);  // a block was inserted into the new
  return best.len >= 2 * depth ? best : SharedRun{};
}

}  // namespace

void SuffixIndex::update_document(std::string_view key, std::span<const int32_t> tokens) {
  if (tokens.size() > config_.max_tokens_per_document) {
    tokens = tokens.last(config_.max_tokens_per_document);
  }
  Document& doc = touch(key);
  const std::span<const int32_t> old = doc.prompt;
  const size_t n = old.size();
  const size_t m = tokens.size();
  const size_t depth = static_cast<size_t>(config_.max_depth);
  const size_t prefix = static_cast<size_t>(
      std::mismatch(old.begin(), old.end(), tokens.begin(), tokens.end()).first - old.begin());
  if (prefix == n && n == m) return;
  size_t suffix = 0;
  const size_t max_suffix = std::min(n, m) - prefix;
  while (suffix < max_suffix && old[n - 1 - suffix] == tokens[m - 1 - suffix]) ++suffix;
  SharedRun middle = middle_run(old.subspan(prefix, n - suffix - prefix),
                                tokens.subspan(prefix, m - suffix - prefix), depth);
  middle.old_at += prefix;
  middle.new_at += prefix;
  const SharedRun runs[] = {{0, 0, prefix}, middle, {n - suffix, m - suffix, suffix}};

  // A window starting at i reads [i, i + max_depth): it is the same in both
  // prompts when it lies inside a shared run, or starts in the common suffix
  // (both then run to the sequence's end). Every other window is re-indexed:
  // the old ones out first (fewer leaf splits), then the new ones in.
  auto shared_windows = [&](const SharedRun& r) {
    if (r.old_at + r.len == n && r.new_at + r.len == m) return r.len;
    return r.len >= depth ? r.len - depth + 1 : 0;
  };
  size_t reindexed = 0;
  for (const bool insert : {false, true}) {
    const std::span<const int32_t> seq = insert ? tokens : old;
    size_t pos = 0;
    for (const SharedRun& r : runs) {
      const size_t at = insert ? r.new_at : r.old_at;
      if (r.len == 0 && at != seq.size()) continue;  // no run (the middle one, often)
      index_windows(doc, seq, pos, at, insert);
      reindexed += at - pos;
      pos = at + shared_windows(r);
    }
    assert(pos == seq.size());
  }
  last_reindexed_ = reindexed;
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
  // The document's trie holds exactly its windows: subtracting it node by
  // node is cheaper than removing the windows one by one.
  global_.subtract(it->trie);
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
    Trie::Cursor at;
    if (!trie.find(window.last(static_cast<size_t>(len)), at)) continue;
    // Windows end at max_depth: a long match leaves less room to extend.
    const int budget = std::min(max_tokens, depth - len);
    double prob = 1;
    double score = 0;
    draft.clear();
    int32_t token = 0;
    double step = 0;
    while (static_cast<int>(draft.size()) < budget && trie.next(at, token, step)) {
      if (prob * step < config_.min_token_prob) break;
      prob *= step;
      draft.push_back(token);
      score += prob;
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

SuffixTreeProposal SuffixIndex::propose_tree(std::string_view key, std::span<const int32_t> context,
                                             int max_nodes, int max_depth) const {
  max_nodes = std::min(max_nodes, kMaxDraftTreeNodes);
  if (max_nodes <= 0 || max_depth <= 0 || context.empty()) return {};
  if (auto found = by_key_.find(key); found != by_key_.end()) {
    SuffixTreeProposal own = tree_from(found->second->trie, context, max_nodes, max_depth);
    if (!own.tree.empty()) return own;
  }
  return tree_from(global_, context, max_nodes, max_depth);
}

SuffixTreeProposal SuffixIndex::tree_from(const Trie& trie, std::span<const int32_t> context,
                                          int max_nodes, int max_depth) const {
  // The match and the chain are propose()'s for as many tokens as the tree
  // could hold along one path.
  const SuffixProposal chain = propose_from(trie, context, std::min(max_nodes, max_depth));
  if (chain.tokens.empty()) return {};
  Trie::Cursor match;
  [[maybe_unused]] const bool found =
      trie.find(context.last(static_cast<size_t>(chain.match_len)), match);
  assert(found);
  const int depth_limit = std::min(max_depth, config_.max_depth - chain.match_len);

  SuffixTreeProposal out;
  out.match_len = chain.match_len;
  DraftTree& tree = out.tree;
  double score = 0;
  std::vector<Trie::Cursor> at;  // each node's cursor
  std::vector<int> depth;        // each node's depth
  std::vector<double> path;      // each node's path probability
  auto add = [&](int32_t token, int32_t parent, double step, Trie::Cursor cursor) {
    const size_t p = static_cast<size_t>(parent);
    tree.tokens.push_back(token);
    tree.parents.push_back(parent);
    tree.probs.push_back(static_cast<float>(step));
    at.push_back(cursor);
    depth.push_back(parent < 0 ? 1 : depth[p] + 1);
    // The product in propose()'s order, so a threshold test agrees with it.
    path.push_back((parent < 0 ? 1 : path[p]) * step);
    score += path.back();
  };

  // 1. The chain, walked again for its cursors and step probabilities.
  Trie::Cursor cursor = match;
  for ([[maybe_unused]] const int32_t expected : chain.tokens) {
    int32_t token = 0;
    double step = 0;
    [[maybe_unused]] const bool more = trie.next(cursor, token, step);
    assert(more && token == expected);
    add(token, static_cast<int32_t>(tree.size()) - 1, step, cursor);
  }

  // 2. Best-first over the children of the nodes taken. Path probabilities
  // telescope to count / count(match), so the order compares counts, exactly.
  struct Candidate {
    uint32_t count;
    int32_t parent;
    int32_t token;
    Trie::Cursor to;
    double step;
  };
  auto lower = [](const Candidate& a, const Candidate& b) {
    if (a.count != b.count) return a.count < b.count;
    if (a.parent != b.parent) return a.parent > b.parent;
    return a.token > b.token;
  };
  std::vector<Candidate> frontier;  // a heap under `lower`
  std::vector<Trie::Branch> branches;
  const size_t chain_len = tree.size();
  auto offer_children = [&](int32_t node) {
    const size_t n = static_cast<size_t>(node);
    if ((node < 0 ? 0 : depth[n]) >= depth_limit) return;
    const Trie::Cursor from = node < 0 ? match : at[n];
    const double from_count = trie.count(from);
    const double from_path = node < 0 ? 1 : path[n];
    // Only the root and the chain's nodes have a child already: the next
    // chain node.
    const size_t next = node < 0 ? 0 : n + 1;
    trie.branches(from, branches);
    for (const Trie::Branch& b : branches) {
      if (next < chain_len && b.token == tree.tokens[next]) continue;
      const uint32_t count = trie.count(b.to);
      const double step = count / from_count;
      if (from_path * step < config_.min_token_prob) continue;
      frontier.push_back({count, node, b.token, b.to, step});
      std::push_heap(frontier.begin(), frontier.end(), lower);
    }
  };
  offer_children(-1);
  for (size_t i = 0; i < chain_len; ++i) offer_children(static_cast<int32_t>(i));
  while (tree.size() < static_cast<size_t>(max_nodes) && !frontier.empty()) {
    std::pop_heap(frontier.begin(), frontier.end(), lower);
    const Candidate c = frontier.back();
    frontier.pop_back();
    add(c.token, c.parent, c.step, c.to);
    offer_children(static_cast<int32_t>(tree.size()) - 1);
  }
  out.score = static_cast<float>(score);
  return out;
}

size_t SuffixIndex::num_nodes() const {
  size_t total = global_.live_nodes();
  for (const Document& doc : lru_) total += doc.trie.live_nodes();
  return total;
}

size_t SuffixIndex::num_documents() const {
  return lru_.size();
}

size_t SuffixIndex::memory_bytes() const {
  size_t bytes = global_.memory_bytes();
  for (const Document& doc : lru_) {
    bytes += sizeof(Document) + doc.key.capacity() + doc.trie.memory_bytes() +
             doc.prompt.capacity() * sizeof(int32_t);
    for (const auto& c : doc.completions) bytes += c.capacity() * sizeof(int32_t);
  }
  return bytes;
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
  GHOSTD_TRY_STATUS(global_.validate("global", config_.max_depth));
  if (lru_.size() != by_key_.size() || lru_.size() > static_cast<size_t>(config_.max_documents)) {
    return make_error("SuffixIndex: " + std::to_string(lru_.size()) + " documents, " +
                      std::to_string(by_key_.size()) + " keys, limit " +
                      std::to_string(config_.max_documents));
  }
  uint64_t windows = 0;
  for (const Document& doc : lru_) {
    GHOSTD_TRY_STATUS(doc.trie.validate(doc.key, config_.max_depth));
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
