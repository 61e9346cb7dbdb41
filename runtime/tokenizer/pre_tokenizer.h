// Pre-tokenizer of byte-level BPE tokenizers: a sequence of regex splits run
// on PCRE2 (UTF + UCP, JIT) that cuts text into the words BPE works on.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "runtime/core/result.h"

namespace ghostd::runtime {

// Hugging Face's SplitDelimiterBehavior: what happens to the matched parts.
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// One split step. Hugging Face's Split, Digits and ByteLevel(use_regex) all
// reduce to it.
struct SplitStep {
  std::string pattern;
  bool literal = false;  // pattern is a plain string (HF {"String": ...})
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;  // the matches are the kept parts, the gaps the delimiters
};

// The GPT-2 regex that ByteLevel(use_regex=true) applies.
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Thread-safety: immutable after creation; split() may run on several threads at
// once (match data is allocated per call).
class PreTokenizer {
 public:
  // Compiles each step's pattern; the error names the step and PCRE2's message.
  static Result<PreTokenizer> create(std::vector<SplitStep> steps, bool add_prefix_space = false);
  // Maps a GGUF `tokenizer.ggml.pre` name ("gpt-2", "qwen2", "llama-bpe", ...)
  // to its steps; an unknown name is an error.
  static Result<PreTokenizer> from_gguf_name(std::string_view name);
  // Whether that pre-tokenizer's models look a whole word up before BPE
  // (HF ignore_merges: Llama-3, Tekken).
  static bool gguf_name_ignores_merges(std::string_view name);
  // Every name from_gguf_name accepts.
  static std::vector<std::string_view> gguf_names();

  PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;
  ~PreTokenizer();

  // Appends the pieces of `text` (views into it) to `pieces`. Invalid UTF-8
  // never matches a pattern, so with Isolated steps every byte lands in a piece.
  void split(std::string_view text, std::vector<std::string_view>& pieces) const;
  // Calls f(std::string_view piece) for each piece in order, without building
  // a list (the fast path for encoding).
  template <class F>
  void for_each_piece(std::string_view text, F&& f) const {
    visit(text, [](void* ctx, std::string_view piece) { (*static_cast<std::remove_reference_t<F>*>(ctx))(piece); },
          &f);
  }

  // ByteLevel(add_prefix_space): the caller prepends ' ' to each text segment
  // that does not start with one.
  bool add_prefix_space() const { return add_prefix_space_; }
  size_t step_count() const;

 private:
  struct Compiled;
  using PieceFn = void (*)(void* ctx, std::string_view piece);
  void visit(std::string_view text, PieceFn fn, void* ctx) const;
  void run(size_t first_step, std::string_view text, PieceFn fn, void* ctx, void* match_data) const;
  std::vector<std::unique_ptr<Compiled>> steps_;
  bool add_prefix_space_ = false;
};

}  // namespace ghostd::runtime
