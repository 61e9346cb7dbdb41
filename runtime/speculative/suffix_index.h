// Suffix-tree drafts for speculative decoding (SuffixDecoding, arXiv
// 2411.04975): an index over the token sequences an editor document has shown
// us (its latest prompt, which holds the file, the text after the cursor and
// other open files, and its recent completions), asked "what usually follows
// these last tokens?". Unlike prompt lookup it counts every earlier
// occurrence, so the draft follows the majority continuation and its length
// follows the confidence of the match.
//
// Structure: depth-limited suffix tries. Every suffix of every reference
// sequence is inserted up to `max_depth` tokens (a "window"); a node counts
// the windows passing through it. One trie per document, plus one global trie
// over the windows of all documents, which answers when the document's own
// trie has nothing (SuffixDecoding's per-request and global trees). A path
// only one window takes is stored as a leaf with the window's remaining
// tokens (its tail), not a node per token: 8k tokens of this repo's C++ take
// 18k nodes and ~250 bytes a token per trie instead of 230k nodes and ~2 KB.
//
// propose():
//   1. Of the context's last `max_depth` tokens, each suffix of length L from
//      the longest down to `min_match` that is a path from the root is a
//      candidate match.
//   2. From the match's node, extend greedily by the child with the highest
//      count; a path's probability is the product of child/parent counts, so
//      windows that end at the node (a reference's end, nothing follows) lower
//      it. Stop below `min_token_prob`, at `max_tokens`, or at the depth limit.
//   3. score = sum of the path probabilities (expected accepted tokens). The
//      best-scoring candidate wins, ties to the longer match. Taking the best
//      score rather than simply the longest match matters at the depth limit:
//      a match of L tokens can extend only max_depth - L tokens.
//   4. Document trie first; the global trie only when it proposes nothing.
//
// propose_tree() offers a token tree for one tree-verify pass instead:
//   1. The match and its greedy chain are propose()'s, asked for
//      min(max_nodes, max_depth) tokens: nodes 0..k-1 are that chain, each the
//      child of the one before. The chain is taken whole before any branch,
//      even where a branch near the root is likelier than the chain's deep
//      end: an accepted greedy path then needs no KV move, and the tree holds
//      the plain draft it replaces, so it never accepts fewer tokens.
//   2. The rest grows best-first: of the children of the nodes taken so far,
//      add the one with the highest path probability, until max_nodes, node
//      depth max_depth (and the window limit, as in propose), or no child left
//      with a path probability of min_token_prob. Path probabilities telescope to count(node) /
//      count(match), so the order compares counts, exactly; ties go to the
//      earlier parent, then the lower token. Each node comes after its parent.
//
// Incremental update: a new prompt for a document is diffed against the stored
// one (common prefix and suffix, and between them one long shared run when
// there is one: two edits at once, like lines dropped from the prefix
// window's front while the user types). Only windows that overlap a change
// (those starting within max_depth - 1 tokens before it, and inside it) are
// removed and the new ones inserted: a keystroke costs O(changed x max_depth)
// trie steps plus a linear token compare.
//
// Invariants (validate()): every live node has count >= 1 and >= the sum of
// its children's counts; **a non-root node with count 1 is a leaf** (no
// children, maybe a tail; a node that drops to count 1 has what is below it
// folded into its tail) and only those have tails, so incremental updates give
// the same trie as a rebuild; the global trie's root count equals the sum of
// the document tries' root counts, and a document trie's equals its token
// count (a window per token).
//
// Use (engine thread): update_document(doc, prompt) when a job starts;
// propose(doc, prompt + generated, n) before each verify step;
// add_completion(doc, output) when it ends; remove_document on close. The
// prompt itself is indexed, so a context that ends exactly at the prompt's end
// also matches that final occurrence, which continues nowhere: propose after
// the first sampled token, when the context has left the indexed prompt.
//
// Memory: a document keeps at most `max_tokens_per_document` tokens (the
// prompt truncated to its last N tokens, then the oldest completions dropped),
// so each trie holds at most N of its windows; beyond `max_documents` the
// least recently updated document is evicted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/core/result.h"
#include "runtime/speculative/draft_tree.h"

namespace ghostd::runtime {

// Values below a minimum are clamped to it (1 for max_depth, max_documents,
// max_tokens_per_document and min_match; 0 for max_completions).
struct SuffixIndexConfig {
  int max_depth = 32;        // longest suffix indexed / matched (tokens)
  int max_documents = 256;   // LRU beyond this
  int max_completions = 32;  // per document
  size_t max_tokens_per_document = 1 << 18;
  float min_token_prob = 0.1f;  // stop extending when a path's probability falls below
  int min_match = 2;            // shorter context matches do not propose
};

struct SuffixProposal {
  std::vector<int32_t> tokens;  // empty: no proposal
  float score = 0;              // expected accepted tokens (sum of path probabilities)
  int match_len = 0;            // context tokens matched
};

struct SuffixTreeProposal {
  DraftTree tree;   // empty: no proposal; probs[i] = count(i) / count(parent)
  float score = 0;  // expected accepted tokens (sum of the nodes' path probabilities)
  int match_len = 0;
};

// Thread-safety: not thread-safe; owned by the engine thread.
class SuffixIndex {
 public:
  explicit SuffixIndex(SuffixIndexConfig config = {});

  // The document's prompt: re-indexes only what changed against the previous
  // prompt of this key (common prefix, common suffix and one shared run
  // between two edits kept), so a keystroke costs O(changed tokens x
  // max_depth), not O(prompt x max_depth). Creates the document (evicting the
  // least recently updated one beyond max_documents).
  void update_document(std::string_view key, std::span<const int32_t> tokens);
  // One finished completion's output; the document keeps its last
  // max_completions. Creates the document when unknown.
  void add_completion(std::string_view key, std::span<const int32_t> tokens);
  void remove_document(std::string_view key);

  // Up to max_tokens tokens likely to follow `context` (a job's prompt +
  // generated tokens; only its last max_depth tokens matter). An unknown key
  // proposes from the global trie alone.
  SuffixProposal propose(std::string_view key, std::span<const int32_t> context,
                         int max_tokens) const;
  // A tree of at most max_nodes (capped at kMaxDraftTreeNodes) nodes of depth
  // at most max_depth, for the match propose() picks; its first nodes are
  // propose(key, context, min(max_nodes, max_depth))'s tokens as a chain.
  SuffixTreeProposal propose_tree(std::string_view key, std::span<const int32_t> context,
                                  int max_nodes, int max_depth) const;

  // Sizes for tests and metrics: live trie nodes (roots excluded) over the
  // document tries and the global trie; documents held.
  size_t num_nodes() const;
  size_t num_documents() const;
  // Windows removed plus inserted by the last update_document that changed
  // something (its cost in trie walks).
  size_t last_reindexed() const { return last_reindexed_; }
  // Approximate heap bytes of all tries and stored sequences; walks every node.
  size_t memory_bytes() const;

  // For tests: every (path, count) of a trie in depth-first token order; the
  // document's trie, or the global one. Empty for an unknown key.
  using PathCounts = std::vector<std::pair<std::vector<int32_t>, uint32_t>>;
  PathCounts document_paths(std::string_view key) const;
  PathCounts global_paths() const;
  // Checks the invariants above; the error names the trie and node.
  Status validate() const;

 private:
  // Depth-limited suffix trie over counted windows. Nodes live in fixed-size
  // chunks (index 0 is the root) with a free list; children are kept sorted
  // by token. A node that only one window passes through (count 1) is a leaf
  // holding that window's remaining tokens as its tail instead of a chain of
  // nodes: most of a code window's depth is unique, so this keeps a document
  // at about one leaf per token plus its repeated paths.
  class Trie {
   public:
    Trie();
    void insert(std::span<const int32_t> window);
    void remove(std::span<const int32_t> window);  // the window must have been inserted
    // Removes every window of `other`, all of which this trie holds.
    void subtract(const Trie& other);

    // A place in the trie: a node and how much of its tail was consumed.
    struct Cursor {
      uint32_t node = 0;
      uint32_t offset = 0;
    };
    // Follows `path` from the root; false when it leaves the trie.
    bool find(std::span<const int32_t> path, Cursor& at) const;
    // The most likely next token after `at`, and the probability of taking it
    // (count of the next node over count of this one); false at a path's end.
    bool next(Cursor& at, int32_t& token, double& prob) const;
    // Windows through `at` (1 inside a tail).
    uint32_t count(const Cursor& at) const { return slot(at.node).count; }
    // Every next token after `at` with the cursor past it, in token order;
    // inside a tail the one next token. `out` is cleared first.
    struct Branch {
      int32_t token;
      Cursor to;
    };
    void branches(const Cursor& at, std::vector<Branch>& out) const;

    size_t live_nodes() const { return size_ - 1 - free_.size(); }
    uint32_t root_count() const { return slot(0).count; }
    size_t memory_bytes() const;
    void paths(PathCounts& out) const;
    Status validate(std::string_view name, int max_depth) const;

   private:
    struct Edge {
      int32_t token;
      uint32_t node;
    };
    struct Node {
      uint32_t count = 0;
      std::vector<Edge> children;  // count >= 2 only; sorted by token
      std::vector<int32_t> tail;   // count == 1 only: the window's tokens below
    };
    // Node storage: fixed chunks, so growing never moves a node (a vector's
    // reallocations made a fresh 8k-token prompt 4x slower) and an idle
    // document costs one small chunk.
    static constexpr uint32_t kChunkBits = 8;
    static constexpr uint32_t kChunk = 1u << kChunkBits;
    Node& slot(uint32_t node) { return chunks_[node >> kChunkBits][node & (kChunk - 1)]; }
    const Node& slot(uint32_t node) const {
      return chunks_[node >> kChunkBits][node & (kChunk - 1)];
    }
    const Edge* child(uint32_t node, int32_t token) const;
    uint32_t allocate();
    uint32_t add_child(uint32_t node, int32_t token, uint32_t count);
    void release(uint32_t node);
    // Removes the window [first, rest...] below `start`, whose count the
    // caller already lowered.
    void remove_below(uint32_t start, int32_t first, std::span<const int32_t> rest);
    void fold_into_leaf(uint32_t node);
    void subtract_below(uint32_t node, const Trie& other, uint32_t other_node);
    void reset_if_empty();

    std::vector<std::unique_ptr<Node[]>> chunks_;
    uint32_t size_ = 0;  // slots handed out, the root (0) included
    std::vector<uint32_t> free_;
  };

  struct Document {
    std::string key;
    std::vector<int32_t> prompt;
    std::deque<std::vector<int32_t>> completions;
    size_t completion_tokens = 0;
    Trie trie;
  };
  using DocumentList = std::list<Document>;  // most recently updated first

  Document& touch(std::string_view key);
  // Inserts (or removes) the windows of `seq` starting at [begin, end), in
  // the document's trie and the global one.
  void index_windows(Document& doc, std::span<const int32_t> seq, size_t begin, size_t end,
                     bool insert);
  void drop_oldest_completion(Document& doc);
  void enforce_token_budget(Document& doc);
  void erase(DocumentList::iterator it);
  SuffixProposal propose_from(const Trie& trie, std::span<const int32_t> context,
                              int max_tokens) const;
  SuffixTreeProposal tree_from(const Trie& trie, std::span<const int32_t> context, int max_nodes,
                               int max_depth) const;

  SuffixIndexConfig config_;
  DocumentList lru_;
  std::map<std::string, DocumentList::iterator, std::less<>> by_key_;
  Trie global_;
  size_t last_reindexed_ = 0;
};

}  // namespace ghostd::runtime
