// Fill-in-the-middle prompts at the text level: the template of the model
// family, a token budget split between context, prefix and suffix windows,
// laid out from most to least stable for KV reuse (DESIGN.md "Prompt layout
// and cache reuse").
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/result.h"

namespace ghostd::server {

// What prompt building needs from a tokenizer. Wire the runtime's Tokenizer
// with make_tokenizer_view(); tests use a byte-level stand-in.
struct TokenizerView {
  // dummy_prefix: whether a SentencePiece vocabulary that adds a leading space
  // to a text adds it here (false for a piece that continues earlier text or
  // follows a marker token); byte-level vocabularies ignore it.
  std::function<std::vector<int32_t>(std::string_view text, bool parse_special, bool dummy_prefix)> encode;
  std::function<std::optional<int32_t>(std::string_view token)> find_token;
  std::function<std::string(const std::vector<int32_t>& ids)> decode;
  // The token the tokenizer puts first in a sequence (its add_bos default),
  // or none: prompts start with it.
  std::optional<int32_t> bos;
};

// Adapts any tokenizer with encode(text, parse_special[, dummy_prefix]),
// find_token(text) and decode(ids) members, and bos_id()/add_bos_default()
// where it has them. The tokenizer must outlive the view.
template <class Tok>
TokenizerView make_tokenizer_view(const Tok& tok) {
  TokenizerView view{
      [&tok](std::string_view text, bool parse_special, bool dummy_prefix) {
        if constexpr (requires { tok.encode(text, parse_special, dummy_prefix); }) {
          return tok.encode(text, parse_special, dummy_prefix);
        } else {
          (void)dummy_prefix;
          return tok.encode(text, parse_special);
        }
      },
      [&tok](std::string_view token) { return tok.find_token(token); },
      [&tok](const std::vector<int32_t>& ids) { return tok.decode(ids); },
      std::nullopt,
  };
  if constexpr (requires { tok.add_bos_default(); tok.bos_id(); }) {
    if (tok.add_bos_default() && tok.bos_id() >= 0) view.bos = static_cast<int32_t>(tok.bos_id());
  }
  return view;
}

// kPlain: no fill-in-the-middle tokens; the prompt is the prefix alone
// (left-to-right completion).
enum class FimFamily { kQwenCoder, kStarCoder2, kCodeGemma, kDeepSeekCoder, kCodeLlama, kPlain };
const char* fim_family_name(FimFamily f);

// Special-token ids of one FIM family, found in the vocabulary.
struct FimTemplate {
  FimFamily family = FimFamily::kQwenCoder;
  int32_t prefix_id = -1;
  int32_t suffix_id = -1;
  int32_t middle_id = -1;
  std::optional<int32_t> repo_name_id;  // repository context markers, where the family has them
  std::optional<int32_t> file_sep_id;
  std::optional<int32_t> bos_id;  // starts every prompt: TokenizerView::bos (the tokenizer's add_bos)
  std::vector<int32_t> stop_ids;  // end of text, file separators and FIM markers
};

// Picks the family from the special tokens (first match in the order
// CodeGemma (<|fim_prefix|> with <|file_separator|>), Qwen2.5-Coder,
// StarCoder2, DeepSeek-Coder, CodeLlama). The error lists what was looked for.
// BOS comes from the tokenizer (TokenizerView::bos), never from the family.
ghostd::runtime::Result<FimTemplate> detect_fim_template(const TokenizerView& tok);

// The left-to-right fallback for vocabularies without FIM tokens: the stop
// tokens the vocabulary has, no markers.
FimTemplate plain_template(const TokenizerView& tok);

struct ContextFile {
  std::string path;
  std::string text;
};

struct PromptInput {
  std::string_view prefix;  // text before the cursor (a window ending at the cursor)
  std::string_view suffix;  // text after the cursor (a window starting at it)
  std::string path;         // the current file's path, for repository context
  std::string repo_name;
  std::vector<ContextFile> context;  // other open documents, in a stable order
};

struct PromptBudget {
  int max_prompt_tokens = 2048;
  int suffix_tokens = 128;   // kept short: the suffix is re-prefilled on every keystroke
  int context_tokens = 512;  // other files take at most this much
};

struct Prompt {
  std::vector<int32_t> tokens;
  int context_tokens = 0;
  int prefix_tokens = 0;
  int suffix_tokens = 0;
  size_t prefix_bytes_dropped = 0;  // cut from the front of PromptInput::prefix
  // Token healing: the bytes of the prefix's last token, backed off the
  // prompt; the completion must start with them (CompletionJob::required_prefix).
  std::string heal;
};

// Prefix bytes dropped to fit come off the front in steps of this many bytes,
// at line starts, so consecutive keystrokes keep the same prompt start.
inline constexpr size_t kPrefixCutQuantum = 1024;

// PSM fill-in-the-middle; plain left-to-right (context, path, prefix) when
// the family is kPlain or nothing but whitespace follows the cursor. The
// tokenizer's BOS, where it adds one, comes first. SentencePiece's leading
// space (a vocabulary with a dummy prefix, e.g. CodeLlama's) goes only in front
// of the prefix when it opens the text or follows the FIM prefix marker, as
// CodeLlama's reference "<PRE> {prefix} <SUF>{suffix} <MID>" does; the suffix,
// the context files, the repository name and the path continue after a marker
// and get none.
Prompt build_prompt(const FimTemplate& fim, const TokenizerView& tok, const PromptInput& in,
                    const PromptBudget& budget);

}  // namespace ghostd::server
