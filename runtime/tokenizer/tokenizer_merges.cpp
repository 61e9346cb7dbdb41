// The merge loops of encode: Hugging Face's byte-level BPE (merges by rank)
// and SentencePiece's (by piece score), over Tokenizer::Scratch.
#include <algorithm>
#include <functional>
#include <string_view>

#include "runtime/tokenizer/tokenizer.h"
#include "runtime/tokenizer/tokenizer_scratch.h"

namespace ghostd::runtime {

using tokenizer_detail::pair_key;
using tokenizer_detail::utf8_len;

// Applies merges lowest rank first (leftmost on ties), as Hugging Face does,
// with a heap of candidate pairs: O(n log n) for long words.
void Tokenizer::bpe(std::string_view word, Scratch& scratch, std::vector<int32_t>& out) const {
  auto& syms = scratch.symbols;
  syms.clear();
  const auto n = static_cast<int32_t>(word.size());
  for (int32_t i = 0; i < n; ++i) {
    syms.push_back({byte_id_[static_cast<unsigned char>(word[static_cast<size_t>(i)])], i - 1,
                    i + 1 < n ? i + 1 : -1});
  }
  merge_by_rank(scratch);
  for (int32_t i = 0; i >= 0; i = syms[static_cast<size_t>(i)].next) {
    const int32_t id = syms[static_cast<size_t>(i)].id;
    if (id >= 0) {
      out.push_back(id);
    } else if (unk_id_ >= 0) {
      out.push_back(unk_id_);  // a byte missing from the vocabulary
    }
  }
}

// Merges scratch.symbols (a linked list in order; id -1 never merges) lowest
// rank first, leftmost on ties.
void Tokenizer::merge_by_rank(Scratch& scratch) const {
  using Candidate = Scratch::Candidate;
  auto& syms = scratch.symbols;
  auto& heap = scratch.heap;
  heap.clear();
  const auto n = static_cast<int32_t>(syms.size());
  auto try_push = [&](int32_t left) {
    if (left < 0) return;
    const int32_t right = syms[static_cast<size_t>(left)].next;
    if (right < 0) return;
    const int32_t a = syms[static_cast<size_t>(left)].id;
    const int32_t b = syms[static_cast<size_t>(right)].id;
    if (a < 0 || b < 0) return;
    auto it = merges_.find(pair_key(a, b));
    if (it == merges_.end()) return;
    heap.push_back({it->second.rank, left, a, b});
    std::push_heap(heap.begin(), heap.end(), std::greater<>{});
  };
  for (int32_t i = 0; i + 1 < n; ++i) try_push(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>{});
    const Candidate c = heap.back();
    heap.pop_back();
    auto& left = syms[static_cast<size_t>(c.left)];
    if (left.id != c.left_id || left.next < 0) continue;  // stale
    auto& right = syms[static_cast<size_t>(left.next)];
    if (right.id != c.right_id) continue;
    left.id = merges_.find(pair_key(c.left_id, c.right_id))->second.id;
    right.id = -2;  // removed
    left.next = right.next;
    if (left.next >= 0) syms[static_cast<size_t>(left.next)].prev = c.left;
    try_push(left.prev);
    try_push(c.left);
  }
}

// Hugging Face's BPE over SentencePiece pieces (tokenizer.json with
// byte_fallback): characters are the first symbols, merges apply by rank, and
// a character missing from the vocabulary becomes its <0xXX> tokens.
void Tokenizer::bpe_chars(std::string_view text, Scratch& scratch, std::vector<int32_t>& out) const {
  auto& syms = scratch.symbols;
  auto& spans = scratch.spm_symbols;  // start/len of each first symbol
  syms.clear();
  spans.clear();
  for (size_t i = 0; i < text.size();) {
    const size_t len = std::min(utf8_len(static_cast<unsigned char>(text[i])), text.size() - i);
    const auto idx = static_cast<int32_t>(syms.size());
    auto it = piece_to_id_.find(text.substr(i, len));
    syms.push_back({it != piece_to_id_.end() ? it->second : -1, idx - 1, -1});
    if (idx > 0) syms[static_cast<size_t>(idx - 1)].next = idx;
    spans.push_back({static_cast<int32_t>(i), static_cast<int32_t>(len), 0, 0});
    i += len;
  }
  if (syms.empty()) return;
  merge_by_rank(scratch);
  for (int32_t i = 0; i >= 0; i = syms[static_cast<size_t>(i)].next) {
    const int32_t id = syms[static_cast<size_t>(i)].id;
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    // Never merged, so still one character.
    const std::string_view ch = text.substr(static_cast<size_t>(spans[static_cast<size_t>(i)].start),
                                            static_cast<size_t>(spans[static_cast<size_t>(i)].len));
    const bool fallback = std::all_of(ch.begin(), ch.end(),
                                      [&](char c) { return byte_id_[static_cast<unsigned char>(c)] >= 0; });
    if (fallback) {
      for (char c : ch) out.push_back(byte_id_[static_cast<unsigned char>(c)]);
    } else if (unk_id_ >= 0) {
      out.push_back(unk_id_);
    }
  }
}

void Tokenizer::encode_spm_word(std::string_view text, Scratch& scratch, std::vector<int32_t>& out) const {
  if (merges_.empty()) {
    spm(text, scratch, out);
  } else {
    bpe_chars(text, scratch, out);
  }
}

// SentencePiece BPE: start from UTF-8 characters and repeatedly merge the
// adjacent pair whose concatenation is a mergeable piece with the highest
// score (leftmost on ties). What is left and not in the vocabulary falls back
// to its bytes' <0xXX> tokens (or unk).
void Tokenizer::spm(std::string_view text, Scratch& scratch, std::vector<int32_t>& out) const {
  auto& syms = scratch.spm_symbols;
  auto& heap = scratch.spm_heap;
  syms.clear();
  heap.clear();
  for (size_t i = 0; i < text.size();) {
    const size_t len = std::min(utf8_len(static_cast<unsigned char>(text[i])), text.size() - i);
    const auto idx = static_cast<int32_t>(syms.size());
    syms.push_back({static_cast<int32_t>(i), static_cast<int32_t>(len), idx - 1, -1});
    if (idx > 0) syms[static_cast<size_t>(idx - 1)].next = idx;
    i += len;
  }
  auto try_push = [&](int32_t left) {
    if (left < 0) return;
    const auto& l = syms[static_cast<size_t>(left)];
    if (l.next < 0) return;
    const auto& r = syms[static_cast<size_t>(l.next)];
    const std::string_view joined = text.substr(static_cast<size_t>(l.start), static_cast<size_t>(l.len + r.len));
    auto it = piece_to_id_.find(joined);
    if (it == piece_to_id_.end() || !mergeable_[static_cast<size_t>(it->second)]) return;
    heap.push_back({scores_[static_cast<size_t>(it->second)], left, l.len + r.len});
    std::push_heap(heap.begin(), heap.end());
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(syms.size()); ++i) try_push(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const auto c = heap.back();
    heap.pop_back();
    auto& left = syms[static_cast<size_t>(c.left)];
    if (left.len == 0 || left.next < 0) continue;
    auto& right = syms[static_cast<size_t>(left.next)];
    if (left.len + right.len != c.len) continue;  // one side changed since it was queued
    left.len += right.len;
    right.len = 0;
    left.next = right.next;
    if (left.next >= 0) syms[static_cast<size_t>(left.next)].prev = c.left;
    try_push(left.prev);
    try_push(c.left);
  }
  for (int32_t i = syms.empty() ? -1 : 0; i >= 0; i = syms[static_cast<size_t>(i)].next) {
    const auto& sym = syms[static_cast<size_t>(i)];
    const std::string_view piece = text.substr(static_cast<size_t>(sym.start), static_cast<size_t>(sym.len));
    if (auto it = piece_to_id_.find(piece); it != piece_to_id_.end() && mergeable_[static_cast<size_t>(it->second)]) {
      out.push_back(it->second);
      continue;
    }
    // Without byte fallback pieces the character is one unknown token.
    const bool fallback = std::all_of(piece.begin(), piece.end(),
                                      [&](char ch) { return byte_id_[static_cast<unsigned char>(ch)] >= 0; });
    if (!fallback) {
      if (unk_id_ >= 0) out.push_back(unk_id_);
      continue;
    }
    for (char ch : piece) out.push_back(byte_id_[static_cast<unsigned char>(ch)]);
  }
}

}  // namespace ghostd::runtime
