#include "runtime/tokenizer/pre_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <utility>

namespace ghostd::runtime {

namespace {

constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// DeepSeek's letter class lists the cased scripts by hand (from its tokenizer.json).
constexpr std::string_view kDeepSeekLlmLetters =
    "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af"
    "\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5"
    "\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba"
    "\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45"
    "\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe"
    "\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc"
    "\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139"
    "\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3"
    "\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06"
    "\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3"
    "\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df"
    "\U0001e900-\U0001e943]+";
constexpr std::string_view kDeepSeekPunct =
    "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+";
constexpr std::string_view kCjk = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+";

SplitStep isolated(std::string_view pattern) { return SplitStep{std::string(pattern)}; }

struct CodeDeleter {
  void operator()(pcre2_code* code) const { pcre2_code_free(code); }
};
struct MatchDataDeleter {
  void operator()(pcre2_match_data* data) const { pcre2_match_data_free(data); }
};
using MatchData = std::unique_ptr<pcre2_match_data, MatchDataDeleter>;

struct Segment {
  size_t begin;
  size_t end;
  bool match;
};

bool is_continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

}  // namespace

struct PreTokenizer::Compiled {
  SplitStep step;
  std::unique_ptr<pcre2_code, CodeDeleter> code;
  bool jit = false;

  // Finds the next match at or after `offset`; false when there is none.
  bool find(std::string_view text, size_t offset, pcre2_match_data* data, size_t& begin,
            size_t& end) const {
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    int rc = jit ? pcre2_jit_match(code.get(), subject, text.size(), offset, 0, data, nullptr)
                 : pcre2_match(code.get(), subject, text.size(), offset, 0, data, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {  // very long runs: the interpreter has no such limit
      rc = pcre2_match(code.get(), subject, text.size(), offset, PCRE2_NO_JIT, data, nullptr);
    }
    if (rc < 0) return false;
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data);
    begin = ov[0];
    end = ov[1];
    return true;
  }

  // Splits one piece as Hugging Face's Split pre-tokenizer does, passing each
  // resulting piece to `emit` in order.
  template <class Emit>
  void split(std::string_view text, pcre2_match_data* data, Emit&& emit) const {
    const bool fast = step.behavior == SplitBehavior::kIsolated && !step.invert;
    std::vector<Segment> segs;  // only the rarer behaviors need the whole list
    auto add = [&](size_t b, size_t e, bool match) {
      if (fast) {
        emit(text.substr(b, e - b));
      } else {
        segs.push_back({b, e, match != step.invert});
      }
    };
    size_t pos = 0;
    size_t search = 0;
    size_t begin = 0;
    size_t end = 0;
    while (search < text.size() && find(text, search, data, begin, end)) {
      if (end == begin) {  // empty matches delimit nothing
        search = begin + 1;
        while (search < text.size() && is_continuation(static_cast<unsigned char>(text[search]))) {
          ++search;
        }
        continue;
      }
      if (begin > pos) add(pos, begin, false);
      add(begin, end, true);
      pos = search = end;
    }
    if (pos < text.size()) add(pos, text.size(), false);
    if (fast) return;
    auto out = [&](size_t b, size_t e) { emit(text.substr(b, e - b)); };
    switch (step.behavior) {
      case SplitBehavior::kIsolated:
        for (const auto& s : segs) out(s.begin, s.end);
        break;
      case SplitBehavior::kRemoved:
        for (const auto& s : segs) {
          if (!s.match) out(s.begin, s.end);
        }
        break;
      case SplitBehavior::kContiguous:
      case SplitBehavior::kMergedWithPrevious: {
        // Contiguous glues a match to a preceding match; MergedWithPrevious
        // glues a match to a preceding non-match.
        const bool contiguous = step.behavior == SplitBehavior::kContiguous;
        std::vector<Segment> merged;
        bool prev_match = false;
        for (const auto& s : segs) {
          const bool glue = contiguous ? (s.match && prev_match) : (s.match && !prev_match);
          if (glue && !merged.empty()) {
            merged.back().end = s.end;
          } else {
            merged.push_back(s);
          }
          prev_match = s.match;
        }
        for (const auto& s : merged) out(s.begin, s.end);
        break;
      }
      case SplitBehavior::kMergedWithNext: {
        std::vector<Segment> merged;  // built back to front
        bool next_match = false;
        for (auto it = segs.rbegin(); it != segs.rend(); ++it) {
          if (it->match && !next_match && !merged.empty()) {
            merged.back().begin = it->begin;
          } else {
            merged.push_back(*it);
          }
          next_match = it->match;
        }
        for (auto it = merged.rbegin(); it != merged.rend(); ++it) out(it->begin, it->end);
        break;
      }
    }
  }
};

PreTokenizer::PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;
PreTokenizer::~PreTokenizer() = default;

size_t PreTokenizer::step_count() const { return steps_.size(); }

Result<PreTokenizer> PreTokenizer::create(std::vector<SplitStep> steps, bool add_prefix_space) {
  PreTokenizer pre;
  pre.add_prefix_space_ = add_prefix_space;
  for (size_t i = 0; i < steps.size(); ++i) {
    auto compiled = std::make_unique<Compiled>();
    compiled->step = std::move(steps[i]);
    // MATCH_INVALID_UTF: invalid bytes in the text never match instead of
    // failing the whole match, so arbitrary bytes still tokenize.
    // (PCRE2 rejects UCP together with LITERAL; a literal needs no classes.)
    const uint32_t options = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF |
                             (compiled->step.literal ? PCRE2_LITERAL : PCRE2_UCP);
    int err = 0;
    PCRE2_SIZE err_offset = 0;
    const auto& pattern = compiled->step.pattern;
    compiled->code.reset(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                       options, &err, &err_offset, nullptr));
    if (!compiled->code) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      return Error{"pre-tokenizer step " + std::to_string(i) + ": pattern '" + pattern +
                   "' does not compile at offset " + std::to_string(err_offset) + ": " +
                   reinterpret_cast<const char*>(msg)};
    }
    compiled->jit = pcre2_jit_compile(compiled->code.get(), PCRE2_JIT_COMPLETE) == 0;
    pre.steps_.push_back(std::move(compiled));
  }
  return pre;
}

namespace {

// Patterns of the pre-tokenizers that GGUF files name in tokenizer.ggml.pre,
// as the models' tokenizer.json files state them (PCRE2 runs those as they
// are, so no rewritten variants are needed).
constexpr std::string_view kQwen35Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kJais2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1})";
// DeepSeek-V3: digits in threes, then CJK kana/ideographs, then the rest.
constexpr std::string_view kDeepSeekV3Cjk = "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+";
constexpr std::string_view kDeepSeekV3Pattern =
    R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kGpt2NoTrailingPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
constexpr std::string_view kBloomPattern = " ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+";
constexpr std::string_view kTekkenPattern =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kGpt4oPattern =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Possessive quantifiers as in the model's tokenizer.json (PCRE2 has them).
constexpr std::string_view kBailingPattern =
    R"('(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+)";
constexpr std::string_view kSeedCoderPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kExaoneMoePattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+)";

struct NamedPre {
  std::vector<std::string_view> names;
  std::vector<std::string_view> patterns;  // each an Isolated split, in order
  bool ignore_merges = false;              // a word that is a whole vocab entry skips BPE
};

const std::vector<NamedPre>& named_pre_tokenizers() {
  static const std::vector<NamedPre> kTable = {
      {{"default", "gpt-2", "gpt2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de",
        "a.x-4.0", "mellum", "modern-bert", "jina-v1-en", "jina-v2-code", "roberta-bpe", "mpt", "olmo",
        "jais", "trillion", "granite-docling", "exaone4"},
       {kGpt2Pattern}},
      {{"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b", "mellum2"},
       {R"(\p{N})", kGpt2Pattern}},
      {{"qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "stablelm2", "hunyuan", "solar-open", "megrez",
        "grok-2"},
       {kQwen2Pattern}},
      {{"qwen35"}, {kQwen35Pattern}},
      {{"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
        "jina-v5-nano"},
       {kLlama3Pattern},
       true},
      {{"dbrx", "smaug-bpe", "glm4", "chatglm-bpe"}, {kLlama3Pattern}},
      {{"jais-2"}, {kJais2Pattern}},
      {{"deepseek-coder"}, {R"([\r\n])", R"(\s?\p{L}+)", R"(\s?\p{P}+)", kCjk, R"(\p{N})"}},
      {{"deepseek-llm"},
       {R"([\r\n])", kDeepSeekLlmLetters, kDeepSeekPunct, R"(\s+$)", kCjk, R"(\p{N}+)"}},
      {{"deepseek-v3", "hunyuan-dense", "joyai-llm"}, {R"(\p{N}{1,3})", kDeepSeekV3Cjk, kDeepSeekV3Pattern}},
      {{"falcon"}, {R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2NoTrailingPattern, "[0-9][0-9][0-9]"}},
      {{"poro-chat", "bloom", "gpt3-finnish"}, {kBloomPattern}},
      {{"viking"}, {kBloomPattern, R"(\p{N})"}},
      {{"tekken"}, {kTekkenPattern}, true},
      {{"gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"}, {kGpt4oPattern}},
      {{"tiny_aya", "cohere2moe"}, {R"(\d{1,3}(?=(?:\d{3})*\b))", kGpt4oPattern}},
      {{"bailingmoe", "bailingmoe2", "llada-moe"}, {kBailingPattern}},
      {{"seed-coder"}, {kSeedCoderPattern}},
      {{"exaone-moe"}, {kExaoneMoePattern}},
      {{"laguna"}, {R"([^\n]+|[\n]+)", kQwen2Pattern}},
      {{"chameleon"},
       {"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", R"(\p{N})",
        R"([\p{P}!-/:-@\[-`{-~])", kGpt2Pattern}},
  };
  return kTable;
}

const NamedPre* find_named(std::string_view name) {
  for (const auto& entry : named_pre_tokenizers()) {
    for (auto n : entry.names) {
      if (n == name) return &entry;
    }
  }
  return nullptr;
}

}  // namespace

Result<PreTokenizer> PreTokenizer::from_gguf_name(std::string_view name) {
  const NamedPre* entry = find_named(name);
  if (entry == nullptr) {
    return Error{"unknown pre-tokenizer '" + std::string(name) +
                 "' (expected one of the byte-level BPE names llama.cpp knows, e.g. gpt-2, starcoder, "
                 "qwen2, llama-bpe, deepseek-coder, deepseek-v3, tekken; see PreTokenizer::gguf_names())"};
  }
  std::vector<SplitStep> steps;
  for (auto pattern : entry->patterns) steps.push_back(isolated(pattern));
  auto pre = create(std::move(steps));
  if (!pre) return Error{"pre-tokenizer '" + std::string(name) + "': " + pre.error().message};
  return pre;
}

bool PreTokenizer::gguf_name_ignores_merges(std::string_view name) {
  const NamedPre* entry = find_named(name);
  return entry != nullptr && entry->ignore_merges;
}

std::vector<std::string_view> PreTokenizer::gguf_names() {
  std::vector<std::string_view> names;
  for (const auto& entry : named_pre_tokenizers()) names.insert(names.end(), entry.names.begin(), entry.names.end());
  return names;
}

void PreTokenizer::run(size_t first_step, std::string_view text, PieceFn fn, void* ctx,
                       void* match_data) const {
  if (first_step == steps_.size()) {
    if (!text.empty()) fn(ctx, text);
    return;
  }
  // Depth first: each piece goes through the later steps before the next
  // piece is cut, so no list of all pieces is ever built.
  auto* data = static_cast<pcre2_match_data*>(match_data);
  steps_[first_step]->split(text, data, [&](std::string_view piece) {
    run(first_step + 1, piece, fn, ctx, match_data);
  });
}

void PreTokenizer::visit(std::string_view text, PieceFn fn, void* ctx) const {
  // One match data per call keeps concurrent calls independent; nested steps
  // share it because each reads its match before the next search.
  MatchData data(pcre2_match_data_create(1, nullptr));
  run(0, text, fn, ctx, data.get());
}

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& pieces) const {
  for_each_piece(text, [&](std::string_view piece) { pieces.push_back(piece); });
}

}  // namespace ghostd::runtime
