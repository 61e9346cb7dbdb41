#include "runtime/tokenizer/tokenizer.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "runtime/tokenizer/tokenizer_scratch.h"

namespace ghostd::runtime {

using tokenizer_detail::pair_key;

namespace {

// GPT-2 maps every byte to a printable code point so that BPE pieces are text:
// printable Latin-1 bytes map to themselves, the other 68 to U+0100 upwards.
struct ByteTable {
  std::array<uint16_t, 256> to_cp{};
  std::array<int16_t, 324> from_cp{};
};

constexpr bool byte_is_printable(int b) {
  return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

constexpr ByteTable make_byte_table() {
  ByteTable t;
  for (auto& v : t.from_cp) v = -1;
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const int cp = byte_is_printable(b) ? b : next++;
    t.to_cp[b] = static_cast<uint16_t>(cp);
    t.from_cp[cp] = static_cast<int16_t>(b);
  }
  return t;
}

constexpr ByteTable kByteTable = make_byte_table();

void append_utf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool is_ascii(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

// Whitespace that an lstrip/rstrip added token swallows (ASCII only).
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// SentencePiece's stand-in for a space: U+2581 LOWER ONE EIGHTH BLOCK.
constexpr std::string_view kSpmSpace = "\xE2\x96\x81";

// "<0xAB>" -> 0xAB; -1 for anything else.
int spm_byte_piece(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(piece[3]);
  const int lo = hex(piece[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

// Bytes of one SentencePiece piece: U+2581 is a space.
std::string spm_piece_text(std::string_view piece) {
  std::string out;
  out.reserve(piece.size());
  size_t i = 0;
  while (i < piece.size()) {
    if (piece.compare(i, kSpmSpace.size(), kSpmSpace) == 0) {
      out.push_back(' ');
      i += kSpmSpace.size();
    } else {
      out.push_back(piece[i++]);
    }
  }
  return out;
}


}  // namespace

std::string byte_level_encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) append_utf8(kByteTable.to_cp[b], out);
  return out;
}

bool byte_level_decode(std::string_view text, std::string& out) {
  bool ok = true;
  size_t i = 0;
  while (i < text.size()) {
    utf8proc_int32_t cp = -1;
    const auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + i),
                                    static_cast<utf8proc_ssize_t>(text.size() - i), &cp);
    if (n <= 0) {  // not UTF-8: keep the byte
      out.push_back(text[i++]);
      ok = false;
      continue;
    }
    if (cp >= 0 && cp < static_cast<int32_t>(kByteTable.from_cp.size()) && kByteTable.from_cp[cp] >= 0) {
      out.push_back(static_cast<char>(kByteTable.from_cp[cp]));
    } else {
      out.append(text.substr(i, static_cast<size_t>(n)));
      ok = false;
    }
    i += static_cast<size_t>(n);
  }
  return ok;
}

// Bounded word -> ids cache: a direct-mapped table of one-cache-line entries
// (a hit costs one memory access), split into locked shards so that threads
// rarely share a lock. A collision simply overwrites the older word.
struct Tokenizer::Cache {
  static constexpr size_t kKeyMax = 22;
  static constexpr size_t kIdsMax = 8;
  static constexpr size_t kShards = 64;
  static constexpr size_t kSlotsPerShard = 1024;
  struct alignas(64) Entry {
    uint64_t hash = 0;
    uint8_t len = 0;  // 0: empty
    uint8_t count = 0;
    char key[kKeyMax];
    int32_t ids[kIdsMax];
  };
  struct Shard {
    std::mutex mu;
    std::vector<Entry> slots = std::vector<Entry>(kSlotsPerShard);
  };
  std::array<Shard, kShards> shards;

  static bool cacheable(std::string_view word) { return word.size() <= kKeyMax; }

  bool find(std::string_view word, uint64_t hash, std::vector<int32_t>& out) {
    auto& shard = shards[hash % kShards];
    std::lock_guard lock(shard.mu);
    const Entry& e = shard.slots[(hash / kShards) % kSlotsPerShard];
    if (e.hash != hash || e.len != word.size() || std::memcmp(e.key, word.data(), word.size()) != 0) {
      return false;
    }
    out.insert(out.end(), e.ids, e.ids + e.count);
    return true;
  }

  void put(std::string_view word, uint64_t hash, std::span<const int32_t> ids) {
    if (ids.size() > kIdsMax) return;
    auto& shard = shards[hash % kShards];
    std::lock_guard lock(shard.mu);
    Entry& e = shard.slots[(hash / kShards) % kSlotsPerShard];
    e.hash = hash;
    e.len = static_cast<uint8_t>(word.size());
    e.count = static_cast<uint8_t>(ids.size());
    std::memcpy(e.key, word.data(), word.size());
    std::copy(ids.begin(), ids.end(), e.ids);
  }
};

Tokenizer::Tokenizer() : cache_(std::make_unique<Cache>()) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Result<Tokenizer> Tokenizer::build(TokenizerConfig config) {
  Tokenizer tok;
  const std::string& origin = config.origin;
  size_t size = config.pieces.size();
  for (const auto& a : config.added) {
    if (a.id < 0) return Error{origin + ": added token '" + a.content + "': negative id"};
    size = std::max(size, static_cast<size_t>(a.id) + 1);
  }
  tok.bytes_.resize(size);
  tok.special_.assign(size, 0);
  tok.byte_id_.fill(-1);
  if (config.sentencepiece) {
    // Scores drive the merges unless a merges list does (HF tokenizer.json).
    if (config.merges.empty() && config.scores.size() != config.pieces.size()) {
      return Error{origin + ": scores: has " + std::to_string(config.scores.size()) + " entries, expected " +
                   std::to_string(config.pieces.size()) + " (one per token)"};
    }
    if (!config.mergeable.empty() && config.mergeable.size() != config.pieces.size()) {
      return Error{origin + ": token types: has " + std::to_string(config.mergeable.size()) +
                   " entries, expected " + std::to_string(config.pieces.size())};
    }
    tok.sentencepiece_ = true;
    tok.add_space_prefix_ = config.add_space_prefix;
    tok.prefix_after_added_ = config.prefix_after_added;
    tok.spm_split_words_ = config.split_words;
    tok.scores_ = std::move(config.scores);
    tok.mergeable_ = config.mergeable.empty() ? std::vector<uint8_t>(config.pieces.size(), 1)
                                              : std::move(config.mergeable);
    tok.mergeable_.resize(size, 0);
    tok.scores_.resize(size, 0.0f);
    for (size_t id = 0; id < config.pieces.size(); ++id) {
      const std::string& piece = config.pieces[id];
      if (piece.empty()) continue;
      tok.piece_to_id_.emplace(piece, static_cast<int32_t>(id));
      if (const int b = spm_byte_piece(piece); b >= 0) {
        tok.bytes_[id] = std::string(1, static_cast<char>(b));
        tok.mergeable_[id] = 0;
        if (tok.byte_id_[static_cast<size_t>(b)] < 0) tok.byte_id_[static_cast<size_t>(b)] = static_cast<int32_t>(id);
      } else {
        tok.bytes_[id] = spm_piece_text(piece);
      }
    }
  }
  for (size_t id = 0; id < (tok.sentencepiece_ ? 0 : config.pieces.size()); ++id) {
    const std::string& piece = config.pieces[id];
    if (piece.empty()) continue;
    std::string raw;
    byte_level_decode(piece, raw);
    tok.piece_to_id_.emplace(piece, static_cast<int32_t>(id));
    tok.bytes_to_id_.emplace(raw, static_cast<int32_t>(id));
    tok.bytes_[id] = std::move(raw);
  }
  for (int b = 0; b < (tok.sentencepiece_ ? 0 : 256); ++b) {
    auto it = tok.bytes_to_id_.find(std::string(1, static_cast<char>(b)));
    if (it != tok.bytes_to_id_.end()) tok.byte_id_[b] = it->second;
  }
  tok.merges_.reserve(config.merges.size());
  for (size_t rank = 0; rank < config.merges.size(); ++rank) {
    // Plain references: clang 14 cannot capture structured bindings.
    const std::string& a = config.merges[rank].first;
    const std::string& b = config.merges[rank].second;
    auto field = [&] { return origin + ": merges[" + std::to_string(rank) + "] ('" + a + " " + b + "')"; };
    auto ia = tok.piece_to_id_.find(a);
    if (ia == tok.piece_to_id_.end()) return Error{field() + ": names unknown token '" + a + "'"};
    auto ib = tok.piece_to_id_.find(b);
    if (ib == tok.piece_to_id_.end()) return Error{field() + ": names unknown token '" + b + "'"};
    auto im = tok.piece_to_id_.find(a + b);
    if (im == tok.piece_to_id_.end()) {
      return Error{field() + ": merged token '" + a + b + "' is not in the vocabulary"};
    }
    tok.merges_.emplace(pair_key(ia->second, ib->second), Merge{static_cast<int32_t>(rank), im->second});
  }
  tok.added_ = std::move(config.added);
  for (uint32_t i = 0; i < tok.added_.size(); ++i) {
    const auto& a = tok.added_[i];
    if (a.content.empty()) return Error{origin + ": added token " + std::to_string(a.id) + ": empty content"};
    tok.bytes_[a.id] = a.content;
    // Added tokens come only from the added-token split, never from BPE.
    if (auto it = tok.bytes_to_id_.find(a.content); it != tok.bytes_to_id_.end() && it->second == a.id) {
      tok.bytes_to_id_.erase(it);
    }
    if (tok.sentencepiece_) tok.mergeable_[static_cast<size_t>(a.id)] = 0;
    tok.special_[a.id] = a.special ? 1 : 0;
    tok.added_to_id_[a.content] = a.id;
    tok.added_by_first_[static_cast<unsigned char>(a.content[0])].push_back(i);
  }
  for (auto& list : tok.added_by_first_) {
    std::stable_sort(list.begin(), list.end(), [&](uint32_t x, uint32_t y) {
      return tok.added_[x].content.size() > tok.added_[y].content.size();
    });
  }
  tok.pre_ = std::move(config.pre);
  tok.nfc_ = config.nfc;
  tok.ignore_merges_ = config.ignore_merges;
  tok.unk_id_ = config.unk_id;
  tok.bos_id_ = config.bos_id;
  tok.eos_id_ = config.eos_id;
  tok.add_bos_ = config.add_bos;
  return tok;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool parse_special, bool dummy_prefix) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  Scratch scratch;
  // SentencePiece puts its dummy prefix in front of the text and after each
  // added token; byte-level vocabularies ignore the flag.
  bool prefix = dummy_prefix;
  if (added_.empty()) {
    encode_segment(text, prefix, scratch, out);
    return out;
  }
  // Added tokens are cut out first, longest match at the leftmost position.
  size_t start = 0;
  size_t i = 0;
  while (i < text.size()) {
    const AddedToken* hit = nullptr;
    for (uint32_t idx : added_by_first_[static_cast<unsigned char>(text[i])]) {
      const AddedToken& a = added_[idx];
      if (a.special && !parse_special) continue;
      if (text.compare(i, a.content.size(), a.content) == 0) {
        hit = &a;
        break;
      }
    }
    if (hit == nullptr) {
      ++i;
      continue;
    }
    size_t seg_end = i;
    if (hit->lstrip) {
      while (seg_end > start && is_space(text[seg_end - 1])) --seg_end;
    }
    encode_segment(text.substr(start, seg_end - start), prefix, scratch, out);
    out.push_back(hit->id);
    prefix = dummy_prefix && prefix_after_added_;
    i += hit->content.size();
    if (hit->rstrip) {
      while (i < text.size() && is_space(text[i])) ++i;
    }
    start = i;
  }
  encode_segment(text.substr(start), prefix, scratch, out);
  return out;
}

void Tokenizer::encode_segment(std::string_view text, bool prefix, Scratch& scratch,
                               std::vector<int32_t>& out) const {
  if (text.empty()) return;
  if (sentencepiece_) {
    // Escape spaces (and add the dummy prefix) before merging: pieces hold U+2581.
    std::string& escaped = scratch.prefixed;
    escaped.clear();
    if (prefix && add_space_prefix_) escaped += kSpmSpace;
    // (the escaped text must outlive the words cut from it below)
    for (char c : text) {
      if (c == ' ') {
        escaped += kSpmSpace;
      } else {
        escaped.push_back(c);
      }
    }
    if (!spm_split_words_) {
      encode_spm_word(escaped, scratch, out);
      return;
    }
    // Metaspace(split): words start at each U+2581; merges stay inside them.
    std::string_view rest = escaped;
    while (!rest.empty()) {
      size_t cut = rest.find(kSpmSpace, 1);
      if (cut == std::string_view::npos) cut = rest.size();
      encode_spm_word(rest.substr(0, cut), scratch, out);
      rest.remove_prefix(cut);
    }
    return;
  }
  if (nfc_ && !is_ascii(text)) {
    utf8proc_uint8_t* dst = nullptr;
    const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                static_cast<utf8proc_ssize_t>(text.size()), &dst,
                                static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
    if (n >= 0) {  // invalid UTF-8 is left as it is
      scratch.normalized.assign(reinterpret_cast<const char*>(dst), static_cast<size_t>(n));
      text = scratch.normalized;
    }
    std::free(dst);
  }
  if (pre_.add_prefix_space() && text[0] != ' ') {
    scratch.prefixed.assign(1, ' ');
    scratch.prefixed.append(text);
    text = scratch.prefixed;
  }
  pre_.for_each_piece(text, [&](std::string_view piece) { encode_word(piece, scratch, out); });
}

void Tokenizer::encode_word(std::string_view word, Scratch& scratch,
                            std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (word.size() == 1) {
    const int32_t id = byte_id_[static_cast<unsigned char>(word[0])];
    if (id >= 0 || unk_id_ >= 0) out.push_back(id >= 0 ? id : unk_id_);
    return;
  }
  if (ignore_merges_) {
    if (auto it = bytes_to_id_.find(word); it != bytes_to_id_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (!Cache::cacheable(word)) {
    bpe(word, scratch, out);
    return;
  }
  const uint64_t hash = StringHash{}(word);
  if (cache_->find(word, hash, out)) return;
  const size_t first = out.size();
  bpe(word, scratch, out);
  cache_->put(word, hash, std::span<const int32_t>(out).subspan(first));
}

std::string Tokenizer::decode_text(std::span<const int32_t> ids, bool skip_special) const {
  std::string out = decode(ids, skip_special);
  // HF's Llama decoder strips the one space the dummy prefix added, and only
  // when the first token carries it.
  if (adds_space_prefix() && !ids.empty() && !out.empty() && out[0] == ' ') {
    const std::string& first = token_bytes(ids[0]);
    if (!first.empty() && first[0] == ' ') out.erase(0, 1);
  }
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= bytes_.size()) continue;
    if (skip_special && special_[static_cast<size_t>(id)]) continue;
    out += bytes_[static_cast<size_t>(id)];
  }
  return out;
}

const std::string& Tokenizer::token_bytes(int32_t id) const {
  static const std::string kEmpty;
  if (id < 0 || static_cast<size_t>(id) >= bytes_.size()) return kEmpty;
  return bytes_[static_cast<size_t>(id)];
}

std::optional<int32_t> Tokenizer::find_token(std::string_view content) const {
  if (auto it = added_to_id_.find(content); it != added_to_id_.end()) return it->second;
  if (auto it = piece_to_id_.find(content); it != piece_to_id_.end()) return it->second;
  return std::nullopt;
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < special_.size() && special_[static_cast<size_t>(id)] != 0;
}

std::string StreamDecoder::push(int32_t id) {
  pending_ += tokenizer_->token_bytes(id);
  // Hold back a trailing lead byte whose continuation bytes have not arrived.
  const size_t n = pending_.size();
  size_t cut = n;
  for (size_t k = 1; k <= std::min<size_t>(3, n); ++k) {
    const auto c = static_cast<unsigned char>(pending_[n - k]);
    if ((c & 0xC0) == 0x80) continue;
    if (c >= 0xC0) {
      const size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
      if (need > k) cut = n - k;
    }
    break;
  }
  std::string ready = pending_.substr(0, cut);
  pending_.erase(0, cut);
  return ready;
}

std::string StreamDecoder::flush() {
  std::string rest;
  rest.swap(pending_);
  return rest;
}

}  // namespace ghostd::runtime
