#include "server/prompt.h"

#include <doctest/doctest.h>

#include <algorithm>

#include "byte_tokenizer.h"
#include "runtime/model/model_loader.h"

using namespace ghostd::server;
using ghostd::server::testing::ByteTokenizer;

TEST_CASE("FIM family is detected from special tokens") {
  struct Case {
    std::vector<std::string> specials;
    std::optional<FimFamily> family;
    bool repo;
  };
  const std::vector<Case> cases = {
      {{"<|endoftext|>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|repo_name|>", "<|file_sep|>"},
       FimFamily::kQwenCoder, true},
      {{"<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<file_sep>", "<repo_name>"}, FimFamily::kStarCoder2, true},
      // CodeGemma: Qwen's FIM spellings, its own file separator, no repo name.
      {{"<eos>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|file_separator|>"}, FimFamily::kCodeGemma,
       true},
      {{"<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "hole\xEF\xBD\x9C>",
        "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>"},
       FimFamily::kDeepSeekCoder, false},
      {{"\xE2\x96\x81<PRE>", "\xE2\x96\x81<SUF>", "\xE2\x96\x81<MID>", "\xE2\x96\x81<EOT>"}, FimFamily::kCodeLlama, false},
      {{"<|endoftext|>"}, std::nullopt, false},
  };
  for (const auto& c : cases) {
    ByteTokenizer tok(c.specials);
    auto t = detect_fim_template(make_tokenizer_view(tok));
    CHECK(t.ok() == c.family.has_value());
    if (!t.ok()) {
      CHECK(t.error().message.find("fim_prefix") != std::string::npos);
      continue;
    }
    CHECK(t->family == *c.family);
    CHECK(t->file_sep_id.has_value() == c.repo);
    CHECK(std::find(t->stop_ids.begin(), t->stop_ids.end(), t->middle_id) != t->stop_ids.end());
  }
}

TEST_CASE("CodeGemma prompt: <bos> first, files joined by <|file_separator|>, PSM markers, the separator stops") {
  ByteTokenizer tok({"<eos>", "<bos>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|file_separator|>"},
                    "<bos>");
  auto view = make_tokenizer_view(tok);
  auto fim = detect_fim_template(view);
  REQUIRE(fim.ok());
  CHECK(std::string(fim_family_name(fim->family)) == "codegemma");
  CHECK(!fim->repo_name_id.has_value());
  const int32_t sep = *tok.find_token("<|file_separator|>");
  CHECK(std::find(fim->stop_ids.begin(), fim->stop_ids.end(), sep) != fim->stop_ids.end());
  CHECK(std::find(fim->stop_ids.begin(), fim->stop_ids.end(), *tok.find_token("<eos>")) != fim->stop_ids.end());
  PromptInput in{"x = 1\ny", "\nprint(y)\n", "a.py", "repo", {{"b.py", "Z = 2"}}};
  Prompt p = build_prompt(*fim, view, in, PromptBudget{});
  CHECK(tok.decode(p.tokens) ==
        "<bos><|file_separator|>b.py\nZ = 2\n<|file_separator|>a.py\n<|fim_prefix|>x = 1\n<|fim_suffix|>\nprint(y)\n"
        "<|fim_middle|>");
  CHECK(p.heal == "y");
}

TEST_CASE("prompt layout: context first, then prefix, suffix, middle") {
  ByteTokenizer tok = testing::qwen_tokenizer();
  auto view = make_tokenizer_view(tok);
  auto fim = detect_fim_template(view);
  REQUIRE(fim.ok());
  PromptInput in{"def f():\n    ret", "\nprint(f())\n", "a.py", "repo", {{"b.py", "X = 1"}}};
  Prompt p = build_prompt(*fim, view, in, PromptBudget{});
  CHECK(tok.decode(p.tokens) ==
        "<|repo_name|>repo\n<|file_sep|>b.py\nX = 1\n<|file_sep|>a.py\n<|fim_prefix|>def f():\n    re"
        "<|fim_suffix|>\nprint(f())\n<|fim_middle|>");
  // Token healing: the prefix's last token is backed off and must be regenerated.
  CHECK(p.heal == "t");
  CHECK(p.prefix_tokens == 15);
  // Special-looking text in the document is plain text, never a control token.
  PromptInput tricky{"<|fim_middle|>", "x", "a.py", "", {}};
  Prompt q = build_prompt(*fim, view, tricky, PromptBudget{});
  CHECK(q.tokens.size() == 3 + 13 + 1);
  CHECK(q.heal == ">");
}

TEST_CASE("budget: suffix window short, prefix cut at quantized line starts") {
  ByteTokenizer tok = testing::qwen_tokenizer();
  auto view = make_tokenizer_view(tok);
  auto fim = *detect_fim_template(view);
  std::string prefix;
  for (int i = 0; i < 400; ++i) prefix += "line " + std::to_string(i) + " of text\n";
  std::string suffix(1000, 's');
  PromptBudget budget{1000, 32, 0};
  Prompt p = build_prompt(fim, view, {prefix, suffix, "a", "", {}}, budget);
  CHECK(p.suffix_tokens == 32);
  CHECK(static_cast<int>(p.tokens.size()) <= 1000);
  CHECK(p.prefix_bytes_dropped > 0);
  CHECK((p.prefix_bytes_dropped == 0 || prefix[p.prefix_bytes_dropped - 1] == '\n'));
  // Typing a few more characters keeps the same prompt start (cache reuse).
  std::string typed = prefix + "abc";
  Prompt p2 = build_prompt(fim, view, {typed, suffix, "a", "", {}}, budget);
  CHECK(p2.prefix_bytes_dropped == p.prefix_bytes_dropped);
  CHECK(std::equal(p.tokens.begin(), p.tokens.begin() + p.prefix_tokens, p2.tokens.begin()));
}

TEST_CASE("plain template: no FIM tokens, the prompt is the prefix alone") {
  ByteTokenizer tok({"<|endoftext|>", "<eos>"});
  auto view = make_tokenizer_view(tok);
  REQUIRE_FALSE(detect_fim_template(view).ok());
  FimTemplate plain = plain_template(view);
  CHECK(plain.family == FimFamily::kPlain);
  CHECK(plain.stop_ids == std::vector<int32_t>{256, 257});
  PromptInput in{"def f():\n    ret", "\nprint(f())\n", "a.py", "repo", {{"b.py", "X = 1"}}};
  Prompt p = build_prompt(plain, view, in, PromptBudget{});
  CHECK(tok.decode(p.tokens) + p.heal == "def f():\n    ret");
  CHECK(p.suffix_tokens == 0);
  PromptBudget small{8, 4, 0};
  Prompt cut = build_prompt(plain, view, in, small);
  CHECK(cut.tokens.size() <= 8);
}

TEST_CASE("nothing but whitespace after the cursor: plain left-to-right layout, context kept") {
  ByteTokenizer tok = testing::qwen_tokenizer();
  auto view = make_tokenizer_view(tok);
  auto fim = *detect_fim_template(view);
  for (std::string_view suffix : {"", "\n", "  \r\n\t\n"}) {
    PromptInput in{"def f():\n    ret", suffix, "a.py", "repo", {{"b.py", "X = 1"}}};
    Prompt p = build_prompt(fim, view, in, PromptBudget{});
    CHECK(tok.decode(p.tokens) + p.heal ==
          "<|repo_name|>repo\n<|file_sep|>b.py\nX = 1\n<|file_sep|>a.py\ndef f():\n    ret");
    CHECK(p.suffix_tokens == 0);
  }
}

TEST_CASE("a prefix shorter than the cut quantum is cut, never emptied") {
  // A small model's budget (e.g. 496 tokens) and ~900 bytes typed at the end
  // of a file: rounding the cut up to kPrefixCutQuantum once dropped it all.
  ByteTokenizer tok({"<|endoftext|>"});
  auto view = make_tokenizer_view(tok);
  FimTemplate plain = plain_template(view);
  for (size_t n : {600, 900, 1023}) {
    std::string prefix;
    while (prefix.size() < n) prefix += "def helper(x):\n    return x * 3\n";
    prefix.resize(n);
    for (int budget : {1, 100, 496, static_cast<int>(n) - 1}) {
      CAPTURE(n);
      CAPTURE(budget);
      Prompt p = build_prompt(plain, view, {prefix, "", "a.py", "", {}}, PromptBudget{budget, 0, 0});
      CHECK_FALSE((p.tokens.empty() && p.heal.empty()));
      CHECK(static_cast<int>(p.tokens.size()) <= budget);
      // What is kept is the end of the prefix, up to the cursor.
      CHECK(prefix.ends_with(tok.decode(p.tokens) + p.heal));
    }
  }
}

TEST_CASE("BOS starts a prompt when the tokenizer adds one, whatever the family") {
  const std::vector<std::string> gemma = {"<eos>", "<bos>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>",
                                          "<|file_separator|>"};
  PromptInput in{"x = 1\ny", "\nprint(y)\n", "a.py", "", {}};
  for (bool add_bos : {false, true}) {
    CAPTURE(add_bos);
    ByteTokenizer tok(gemma, add_bos ? "<bos>" : "");
    auto view = make_tokenizer_view(tok);
    auto fim = detect_fim_template(view);
    REQUIRE(fim.ok());
    Prompt p = build_prompt(*fim, view, in, PromptBudget{});
    CHECK(tok.decode(p.tokens) ==
          std::string(add_bos ? "<bos>" : "") + "<|fim_prefix|>x = 1\n<|fim_suffix|>\nprint(y)\n<|fim_middle|>");
    // The plain layout too.
    p = build_prompt(plain_template(view), view, in, PromptBudget{});
    CHECK(tok.decode(p.tokens) + p.heal == std::string(add_bos ? "<bos>" : "") + "x = 1\ny");
  }
  // A view without a tokenizer behind it (a test's hand-made one) adds none.
  ByteTokenizer qwen = testing::qwen_tokenizer();
  CHECK_FALSE(make_tokenizer_view(qwen).bos.has_value());
}

// CodeLlama's reference layout (Meta's codellama infilling prompt):
// <s> ▁<PRE> encode(prefix) ▁<SUF> encode_without_leading_space(suffix) ▁<MID>.
TEST_CASE("SentencePiece prompts (llama-spm): the dummy-prefix space only where the text starts") {
  auto loaded = ghostd::runtime::load_tokenizer(std::string(GHOSTD_TEST_DATA) + "/tokenizer/ggml-vocab-llama-spm.gguf");
  REQUIRE_MESSAGE(loaded.ok(), (loaded.ok() ? "" : loaded.error().message));
  const ghostd::runtime::Tokenizer& tok = **loaded;
  REQUIRE(tok.adds_space_prefix());
  TokenizerView view = make_tokenizer_view(tok);
  REQUIRE(view.bos == 1);
  const std::string prefix = "def add(a, b):\n    s = a";
  const std::string suffix = "return s\n";

  // Llama 2's vocabulary has no FIM tokens: plain, BOS then the prefix with
  // the space SentencePiece puts in front of a text.
  REQUIRE_FALSE(detect_fim_template(view).ok());
  Prompt plain = build_prompt(plain_template(view), view, {prefix, suffix, "a.py", "", {}}, PromptBudget{});
  REQUIRE(plain.tokens.size() > 2);
  CHECK(plain.tokens[0] == 1);
  std::vector<int32_t> body(plain.tokens.begin() + 1, plain.tokens.end());
  CHECK(tok.decode(body) + plain.heal == " " + prefix);
  CHECK(tok.decode_text(body) + plain.heal == prefix);

  // The CodeLlama markers on the same vocabulary (ids past its end stand in).
  const int32_t pre = 32007, suf = 32008, mid = 32009;
  auto find = view.find_token;
  view.find_token = [find, pre, suf, mid](std::string_view t) -> std::optional<int32_t> {
    if (t == "\xE2\x96\x81<PRE>") return pre;
    if (t == "\xE2\x96\x81<SUF>") return suf;
    if (t == "\xE2\x96\x81<MID>") return mid;
    return find(t);
  };
  auto fim = detect_fim_template(view);
  REQUIRE(fim.ok());
  CHECK(fim->family == FimFamily::kCodeLlama);
  for (const std::string& suffix_text : {suffix, std::string("  return s\n"), std::string("x")}) {
    CAPTURE(suffix_text);
    Prompt p = build_prompt(*fim, view, {prefix, suffix_text, "a.py", "", {}}, PromptBudget{});
    const auto at = [&](int32_t id) { return std::find(p.tokens.begin(), p.tokens.end(), id); };
    REQUIRE(p.tokens.size() > 5);
    CHECK(p.tokens[0] == 1);
    CHECK(p.tokens[1] == pre);
    REQUIRE(at(suf) != p.tokens.end());
    CHECK(p.tokens.back() == mid);
    const std::vector<int32_t> pre_ids(p.tokens.begin() + 2, at(suf));
    const std::vector<int32_t> suf_ids(at(suf) + 1, p.tokens.end() - 1);
    // "<PRE> {prefix}": the prefix opens a text and keeps its leading space.
    CHECK(tok.decode(pre_ids) + p.heal == " " + prefix);
    // "<SUF>{suffix}": exactly the suffix's bytes, no space in front.
    CHECK(suf_ids == tok.encode(suffix_text, false, /*dummy_prefix=*/false));
    CHECK(tok.decode(suf_ids) == suffix_text);
    CHECK(p.suffix_tokens == static_cast<int>(suf_ids.size()));
  }
}
