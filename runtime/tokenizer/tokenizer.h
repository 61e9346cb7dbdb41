// BPE tokenizer of two kinds, loaded from a Hugging Face tokenizer.json or from
// a GGUF vocabulary. Encoding matches Hugging Face's encode(add_special_tokens=False).
// - Byte-level BPE (GPT-2 family: GPT-2, Llama-3, Qwen2, StarCoder2,
//   DeepSeek-Coder): regex pre-tokenizer, rank-ordered merges.
// - SentencePiece BPE (Llama 2, CodeLlama; GGUF tokenizer.ggml.model "llama"):
//   spaces become U+2581 with one more in front of the text (the dummy
//   prefix), adjacent pieces merge highest score first, and characters
//   missing from the vocabulary fall back to <0xXX> byte tokens.
// Not modelled (none of the target tokenizers needs them): added tokens'
// `single_word` and `normalized` (matching is always on the raw text),
// Unicode (non-ASCII) whitespace for lstrip/rstrip, BPE dropout/byte_fallback.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "runtime/tokenizer/pre_tokenizer.h"
#include "runtime/core/result.h"

namespace ghostd::runtime {

// The tokenizer part of a GGUF file's metadata.
struct VocabSpec {
  std::vector<std::string> tokens;    // GPT-2 byte-level encoded, e.g. "Ġthe"
                                      // (SentencePiece: "▁the", "<0x0A>")
  std::vector<float> scores;          // SentencePiece merge priorities; required there
  std::vector<int32_t> token_types;   // GGUF: 1 normal, 2 unknown, 3 control,
                                      // 4 user-defined, 5 unused, 6 byte; may be empty
  std::vector<std::string> merges;    // "a b" form
  std::string pre;                    // tokenizer.ggml.pre, e.g. "gpt-2", "qwen2"
  std::string model = "gpt2";         // tokenizer.ggml.model: "gpt2" or "llama"
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t unk_id = -1;
  std::optional<bool> add_bos;          // tokenizer.ggml.add_bos_token (either model)
  std::optional<bool> add_space_prefix;  // tokenizer.ggml.add_space_prefix (SentencePiece)
  std::string origin = "GGUF vocabulary";  // file name for error messages
};

// A token split out of the text before pre-tokenization (HF "added_tokens").
struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;  // skipped by decode(skip_special); matched only with parse_special
  bool lstrip = false;   // swallows whitespace on its left
  bool rstrip = false;   // swallows whitespace on its right
  bool normalized = false;
};

// Everything a tokenizer is built from; both loaders fill it in.
struct TokenizerConfig {
  std::string origin;                 // file name for error messages
  // SentencePiece pieces are plain UTF-8 with U+2581 for a space; byte-level
  // ones are GPT-2 byte-level encoded.
  bool sentencepiece = false;
  std::vector<std::string> pieces;    // id -> piece; "" for a gap
  // SentencePiece only: id -> merge score (higher merges first), and whether
  // the piece may come out of a merge (normal and user-defined pieces; not
  // control, unknown or byte pieces).
  std::vector<float> scores;
  std::vector<uint8_t> mergeable;
  bool add_space_prefix = false;      // SentencePiece dummy prefix
  bool prefix_after_added = true;     // ... also after each added token (legacy Llama)
  bool split_words = false;           // Metaspace(split): merges stay within words
  std::vector<std::pair<std::string, std::string>> merges;  // by rank
  std::vector<AddedToken> added;
  PreTokenizer pre;
  bool nfc = false;
  bool ignore_merges = false;  // a word that is a whole vocab entry skips BPE (Llama-3)
  int32_t unk_id = -1;
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  bool add_bos = false;
};

// Thread-safety: immutable after loading except for an internally locked BPE
// cache; all const methods may be called from several threads at once.
class Tokenizer {
 public:
  // Also reads add_bos_token and bos_token from tokenizer_config.json next to
  // `path` when that file exists (Hugging Face's Llama and Gemma tokenizers
  // rebuild their post-processor from it).
  static Result<Tokenizer> from_hf_json(const std::filesystem::path& path);
  static Result<Tokenizer> from_vocab(const VocabSpec& spec);
  static Result<Tokenizer> build(TokenizerConfig config);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Token ids of `text`; never adds BOS. With parse_special false, special
  // added tokens in the text are encoded as plain text. SentencePiece: the
  // dummy-prefix space goes in front of the text and after each added token
  // (as llama.cpp and HF's legacy Llama tokenizer do) unless dummy_prefix is
  // false (prompt parts that continue text).
  std::vector<int32_t> encode(std::string_view text, bool parse_special = true,
                              bool dummy_prefix = true) const;
  // Exact bytes of the tokens as a continuation of earlier text (inverse of the
  // byte-level mapping; SentencePiece U+2581 is a space, <0xXX> its byte);
  // unknown ids decode to nothing.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;
  // The text that encode() turned into `ids`: decode() without the dummy-prefix
  // space that SentencePiece put in front (HF's decode of a whole sequence).
  std::string decode_text(std::span<const int32_t> ids, bool skip_special = false) const;
  // Raw bytes of one token ("" for an id out of range).
  const std::string& token_bytes(int32_t id) const;
  // Id of an added token by its content, or of a vocabulary piece by its
  // byte-level text ("Ġthe").
  std::optional<int32_t> find_token(std::string_view content) const;
  bool is_special(int32_t id) const;
  size_t vocab_size() const { return bytes_.size(); }
  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }
  // Whether a sequence starts with bos_id() (callers that build prompts put it
  // there; encode() never does). Decided by the vocabulary, not the model
  // architecture: GGUF tokenizer.ggml.add_bos_token (absent: true for
  // SentencePiece, false for byte-level BPE, as llama.cpp); tokenizer.json's
  // post-processor template starting with a special token, overridden by
  // tokenizer_config.json's add_bos_token where that file says.
  bool add_bos_default() const { return add_bos_; }
  bool is_sentencepiece() const { return sentencepiece_; }
  bool adds_space_prefix() const { return sentencepiece_ && add_space_prefix_; }

 private:
  struct Cache;
  struct Scratch;
  Tokenizer();
  void encode_segment(std::string_view text, bool prefix, Scratch& scratch, std::vector<int32_t>& out) const;
  void spm(std::string_view text, Scratch& scratch, std::vector<int32_t>& out) const;
  void bpe_chars(std::string_view text, Scratch& scratch, std::vector<int32_t>& out) const;
  void encode_spm_word(std::string_view text, Scratch& scratch, std::vector<int32_t>& out) const;
  void merge_by_rank(Scratch& scratch) const;
  void encode_word(std::string_view word, Scratch& scratch, std::vector<int32_t>& out) const;
  void bpe(std::string_view word, Scratch& scratch, std::vector<int32_t>& out) const;

  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using IdMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;
  struct Merge {
    int32_t rank;
    int32_t id;
  };

  std::vector<std::string> bytes_;       // id -> raw bytes
  std::vector<uint8_t> special_;         // id -> is special
  IdMap piece_to_id_;                    // piece text (byte-level or SentencePiece) -> id
  IdMap bytes_to_id_;                    // raw bytes -> id (BPE vocabulary only)
  std::unordered_map<uint64_t, Merge> merges_;  // (left id, right id) -> merge
  std::array<int32_t, 256> byte_id_{};   // single byte -> id, -1 if absent
  std::vector<AddedToken> added_;
  std::array<std::vector<uint32_t>, 256> added_by_first_;  // longest first
  IdMap added_to_id_;
  PreTokenizer pre_;
  bool nfc_ = false;
  bool ignore_merges_ = false;
  int32_t unk_id_ = -1;
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  bool add_bos_ = false;
  bool sentencepiece_ = false;
  bool add_space_prefix_ = false;
  bool prefix_after_added_ = true;
  bool spm_split_words_ = false;
  std::vector<float> scores_;            // SentencePiece: id -> score
  std::vector<uint8_t> mergeable_;       // SentencePiece: id -> may come out of a merge
  std::unique_ptr<Cache> cache_;
};

// Turns a token stream into text without splitting UTF-8 characters: bytes of
// an incomplete sequence are held back until it completes.
// Thread-safety: one instance per stream; not for concurrent use.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer) : tokenizer_(&tokenizer) {}
  std::string push(int32_t id);
  std::string flush();

 private:
  const Tokenizer* tokenizer_;
  std::string pending_;
};

// GPT-2's byte <-> printable code point mapping.
std::string byte_level_encode(std::string_view bytes);
// Inverse; code points outside the mapping are kept as UTF-8. False when the
// text was not byte-level (then `out` still holds the best effort).
bool byte_level_decode(std::string_view text, std::string& out);

}  // namespace ghostd::runtime
