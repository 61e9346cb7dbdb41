#include "server/prompt.h"

#include <algorithm>
#include <array>

namespace ghostd::server {

using ghostd::runtime::Error;
using ghostd::runtime::Result;

const char* fim_family_name(FimFamily f) {
  switch (f) {
    case FimFamily::kQwenCoder: return "qwen2.5-coder";
    case FimFamily::kStarCoder2: return "starcoder2";
    case FimFamily::kCodeGemma: return "codegemma";
    case FimFamily::kDeepSeekCoder: return "deepseek-coder";
    case FimFamily::kCodeLlama: return "codellama";
    case FimFamily::kPlain: return "plain";
  }
  return "unknown";
}

namespace {

struct FamilySpec {
  FimFamily family;
  const char* prefix;
  const char* suffix;
  const char* middle;
  const char* repo_name;  // nullptr when the family has none
  const char* file_sep;
  bool needs_file_sep = false;  // the file separator tells this family from one with the same FIM tokens
};

// CodeGemma shares Qwen2.5-Coder's FIM token spellings; its
// <|file_separator|> tells them apart, so it is tried first.
constexpr std::array<FamilySpec, 5> kFamilies = {{
    {FimFamily::kCodeGemma, "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", nullptr, "<|file_separator|>", true},
    {FimFamily::kQwenCoder, "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|repo_name|>", "<|file_sep|>"},
    {FimFamily::kStarCoder2, "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<repo_name>", "<file_sep>"},
    {FimFamily::kDeepSeekCoder, "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>",
     "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "hole\xEF\xBD\x9C>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>",
     nullptr, nullptr},
    {FimFamily::kCodeLlama, "\xE2\x96\x81<PRE>", "\xE2\x96\x81<SUF>", "\xE2\x96\x81<MID>", nullptr, nullptr},
}};

// Tokens that end a completion in any of the families.
constexpr std::array<const char*, 13> kStopTokens = {
    "<|endoftext|>", "<|file_sep|>", "<|file_separator|>", "<|fim_pad|>", "<|repo_name|>", "<|im_end|>", "<file_sep>",
    "<repo_name>",   "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>",
    "\xE2\x96\x81<EOT>", "<EOT>", "</s>", "<eos>",
};

// `starts_text`: SentencePiece's dummy-prefix space goes in front (the
// prefix opening the text); every other piece continues text or follows a
// marker and gets none.
std::vector<int32_t> encode(const TokenizerView& tok, std::string_view text, bool starts_text = false) {
  if (text.empty()) return {};
  return tok.encode(text, /*parse_special=*/false, starts_text);
}

// The first line start at or after `pos` (text.size() when none).
size_t next_line_start(std::string_view text, size_t pos) {
  if (pos == 0) return 0;
  size_t nl = text.find('\n', pos - 1);
  return nl == std::string_view::npos ? text.size() : nl + 1;
}

// Encodes the prefix window, dropping whole lines from its front in
// quantized steps until it fits.
std::vector<int32_t> fit_prefix(const TokenizerView& tok, std::string_view prefix, int budget, bool starts_text,
                                size_t& dropped) {
  dropped = 0;
  std::vector<int32_t> ids = encode(tok, prefix, starts_text);
  for (int attempt = 0; attempt < 8 && static_cast<int>(ids.size()) > budget; ++attempt) {
    if (budget <= 0) {
      dropped = prefix.size();
      return {};
    }
    std::string_view rest = prefix.substr(dropped);
    double excess = static_cast<double>(ids.size() - static_cast<size_t>(budget)) / static_cast<double>(ids.size());
    size_t cut = static_cast<size_t>(excess * static_cast<double>(rest.size())) + 1;
    size_t target = dropped + cut;
    // A quantized cut keeps the prompt's start still while the user types,
    // but never at the cost of the whole prefix (a prefix shorter than the
    // quantum once cut to nothing: an empty prompt the engine refused).
    const size_t quantized = (target + kPrefixCutQuantum - 1) / kPrefixCutQuantum * kPrefixCutQuantum;
    if (quantized < prefix.size()) target = quantized;
    if (target >= prefix.size()) break;  // keep the tail, below
    const size_t line = next_line_start(prefix, target);
    dropped = line < prefix.size() ? line : target;  // no line break after it: cut mid-line
    ids = encode(tok, prefix.substr(dropped), starts_text);
  }
  if (static_cast<int>(ids.size()) > budget) {  // pathological tokenization: keep the tail
    ids.erase(ids.begin(), ids.end() - budget);
  }
  return ids;
}

}  // namespace

Result<FimTemplate> detect_fim_template(const TokenizerView& tok) {
  for (const auto& spec : kFamilies) {
    auto p = tok.find_token(spec.prefix);
    auto s = tok.find_token(spec.suffix);
    auto m = tok.find_token(spec.middle);
    if (!p || !s || !m) continue;
    FimTemplate t;
    t.family = spec.family;
    t.prefix_id = *p;
    t.suffix_id = *s;
    t.middle_id = *m;
    if (spec.file_sep) {
      t.file_sep_id = tok.find_token(spec.file_sep);
      if (spec.repo_name) t.repo_name_id = tok.find_token(spec.repo_name);
    }
    if (spec.needs_file_sep && !t.file_sep_id) continue;
    t.bos_id = tok.bos;
    for (const char* stop : kStopTokens) {
      if (auto id = tok.find_token(stop)) t.stop_ids.push_back(*id);
    }
    for (int32_t id : {t.prefix_id, t.suffix_id, t.middle_id}) t.stop_ids.push_back(id);
    std::sort(t.stop_ids.begin(), t.stop_ids.end());
    t.stop_ids.erase(std::unique(t.stop_ids.begin(), t.stop_ids.end()), t.stop_ids.end());
    return t;
  }
  return Error{
      "tokenizer: no fill-in-the-middle tokens found (looked for Qwen2.5-Coder and CodeGemma <|fim_prefix|>, StarCoder2 "
      "<fim_prefix>, DeepSeek-Coder <\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>, CodeLlama "
      "\xE2\x96\x81<PRE>)"};
}

FimTemplate plain_template(const TokenizerView& tok) {
  FimTemplate t;
  t.family = FimFamily::kPlain;
  t.bos_id = tok.bos;
  for (const char* stop : kStopTokens) {
    if (auto id = tok.find_token(stop)) t.stop_ids.push_back(*id);
  }
  std::sort(t.stop_ids.begin(), t.stop_ids.end());
  t.stop_ids.erase(std::unique(t.stop_ids.begin(), t.stop_ids.end()), t.stop_ids.end());
  return t;
}

Prompt build_prompt(const FimTemplate& fim, const TokenizerView& tok, const PromptInput& in,
                    const PromptBudget& budget) {
  Prompt out;
  // Nothing but whitespace after the cursor (typing at the end of a file):
  // plain left-to-right text, as the model saw whole files in training. An
  // empty suffix in FIM form reads like the SPM layout, where the middle
  // starts at the top of the file.
  const bool use_fim =
      fim.family != FimFamily::kPlain && in.suffix.find_first_not_of(" \t\r\n") != std::string_view::npos;
  const bool repo_context = fim.file_sep_id.has_value();
  const int markers = (use_fim ? 3 : 0) + (repo_context ? 2 : 0) + (fim.bos_id ? 1 : 0);

  std::vector<int32_t> suffix = use_fim ? encode(tok, in.suffix) : std::vector<int32_t>{};
  if (static_cast<int>(suffix.size()) > budget.suffix_tokens) {
    suffix.resize(static_cast<size_t>(std::max(0, budget.suffix_tokens)));
  }

  // Repository context: other files, each cut to what is left of the context budget.
  std::vector<int32_t> context;
  if (repo_context && (!in.context.empty() || !in.repo_name.empty())) {
    int left = std::min(budget.context_tokens, budget.max_prompt_tokens / 2);
    if (fim.repo_name_id && !in.repo_name.empty()) {
      context.push_back(*fim.repo_name_id);
      auto name = encode(tok, in.repo_name + "\n");
      context.insert(context.end(), name.begin(), name.end());
    }
    for (const auto& file : in.context) {
      if (static_cast<int>(context.size()) + 8 >= left) break;
      std::string body = file.path + "\n" + file.text + "\n";
      auto ids = encode(tok, body);
      size_t room = static_cast<size_t>(left - static_cast<int>(context.size()) - 1);
      if (ids.size() > room) ids.resize(room);
      context.push_back(*fim.file_sep_id);
      context.insert(context.end(), ids.begin(), ids.end());
    }
  }
  std::vector<int32_t> path;
  if (repo_context && !context.empty()) {
    path.push_back(*fim.file_sep_id);
    auto p = encode(tok, in.path + "\n");
    path.insert(path.end(), p.begin(), p.end());
  }

  int prefix_budget = budget.max_prompt_tokens - markers - static_cast<int>(suffix.size() + context.size() + path.size());
  // After the FIM prefix marker, or first in a plain prompt, the prefix opens
  // a text; after the current file's path it continues that text.
  const bool prefix_starts_text = use_fim || path.empty();
  std::vector<int32_t> prefix =
      fit_prefix(tok, in.prefix, prefix_budget, prefix_starts_text, out.prefix_bytes_dropped);
  // Token healing: the cursor cuts the text where running code would not be
  // split (typed indentation "    " is one token; before "return" the model
  // saw "   " + " return"). Back the last token off and let the model
  // regenerate its bytes, choosing a token that may cross the cursor.
  if (prefix.size() > 1 && tok.decode) {
    std::string last = tok.decode({prefix.back()});
    if (!last.empty() && last.size() <= 16) {
      out.heal = std::move(last);
      prefix.pop_back();
    }
  }

  // PSM layout, most stable first: context, current path, prefix, suffix, middle.
  out.tokens.reserve(context.size() + path.size() + prefix.size() + suffix.size() + 4);
  if (fim.bos_id) out.tokens.push_back(*fim.bos_id);
  out.tokens.insert(out.tokens.end(), context.begin(), context.end());
  out.tokens.insert(out.tokens.end(), path.begin(), path.end());
  if (use_fim) out.tokens.push_back(fim.prefix_id);
  out.tokens.insert(out.tokens.end(), prefix.begin(), prefix.end());
  if (use_fim) {
    out.tokens.push_back(fim.suffix_id);
    out.tokens.insert(out.tokens.end(), suffix.begin(), suffix.end());
    out.tokens.push_back(fim.middle_id);
  }
  out.context_tokens = static_cast<int>(context.size() + path.size());
  out.prefix_tokens = static_cast<int>(prefix.size());
  out.suffix_tokens = static_cast<int>(suffix.size());
  return out;
}

}  // namespace ghostd::server
