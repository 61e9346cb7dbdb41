// Tokenizer internals shared by tokenizer.cpp (encode, decode, the word
// cache) and tokenizer_merges.cpp (the BPE and SentencePiece merge loops):
// the per-call scratch buffers and two small helpers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/tokenizer/tokenizer.h"

namespace ghostd::runtime {

namespace tokenizer_detail {

// Length of the UTF-8 sequence that starts with `c` (1 for a stray byte).
inline size_t utf8_len(unsigned char c) {
  if (c < 0xC0) return 1;
  if (c < 0xE0) return 2;
  if (c < 0xF0) return 3;
  return 4;
}

inline uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

}  // namespace tokenizer_detail

// Per-call buffers, so concurrent encode() calls share nothing mutable but the cache.
struct Tokenizer::Scratch {
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
  };
  struct Candidate {
    int32_t rank;
    int32_t left;
    int32_t left_id;
    int32_t right_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  // SentencePiece: a symbol is a byte range of the escaped text.
  struct SpmSymbol {
    int32_t start;
    int32_t len;  // 0: merged into its left neighbour
    int32_t prev;
    int32_t next;
  };
  struct SpmCandidate {
    float score;
    int32_t left;
    int32_t len;  // combined length when queued; stale if it changed
    // Max-heap order: highest score first, leftmost on ties.
    bool operator<(const SpmCandidate& o) const {
      return score != o.score ? score < o.score : left > o.left;
    }
  };
  std::string normalized;
  std::string prefixed;
  std::vector<Symbol> symbols;
  std::vector<Candidate> heap;
  std::vector<SpmSymbol> spm_symbols;
  std::vector<SpmCandidate> spm_heap;
};

}  // namespace ghostd::runtime
