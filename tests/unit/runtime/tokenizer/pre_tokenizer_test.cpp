#include "runtime/tokenizer/pre_tokenizer.h"

#include <doctest/doctest.h>

using ghostd::runtime::PreTokenizer;
using ghostd::runtime::SplitBehavior;
using ghostd::runtime::SplitStep;
using Pieces = std::vector<std::string>;

namespace {

Pieces split(const PreTokenizer& pre, std::string_view text) {
  std::vector<std::string_view> views;
  pre.split(text, views);
  return Pieces(views.begin(), views.end());
}

PreTokenizer make(SplitStep step) {
  auto pre = PreTokenizer::create({std::move(step)});
  REQUIRE_MESSAGE(pre.ok(), (pre.ok() ? "" : pre.error().message));
  return std::move(pre).value();
}

PreTokenizer named(std::string_view name) {
  auto pre = PreTokenizer::from_gguf_name(name);
  REQUIRE_MESSAGE(pre.ok(), (pre.ok() ? "" : pre.error().message));
  return std::move(pre).value();
}

}  // namespace

TEST_CASE("split behaviors follow Hugging Face's definitions") {
  struct Case {
    SplitBehavior behavior;
    bool invert;
    Pieces expect;
  };
  const std::string text = "the-final--countdown";
  const Case cases[] = {
      {SplitBehavior::kRemoved, false, {"the", "final", "countdown"}},
      {SplitBehavior::kIsolated, false, {"the", "-", "final", "-", "-", "countdown"}},
      {SplitBehavior::kMergedWithPrevious, false, {"the-", "final-", "-", "countdown"}},
      {SplitBehavior::kMergedWithNext, false, {"the", "-final", "-", "-countdown"}},
      {SplitBehavior::kContiguous, false, {"the", "-", "final", "--", "countdown"}},
      {SplitBehavior::kRemoved, true, {"-", "-", "-"}},
      {SplitBehavior::kIsolated, true, {"the", "-", "final", "-", "-", "countdown"}},
  };
  for (const auto& c : cases) {
    CAPTURE(static_cast<int>(c.behavior));
    CAPTURE(c.invert);
    CHECK(split(make({"-", true, c.behavior, c.invert}), text) == c.expect);
    CHECK(split(make({"-", false, c.behavior, c.invert}), text) == c.expect);
  }
}

TEST_CASE("named pre-tokenizers split as their models do") {
  struct Case {
    std::string name;
    std::string text;
    Pieces expect;
  };
  const Case cases[] = {
      {"gpt-2", "Hello world", {"Hello", " world"}},
      {"gpt-2", "  a", {" ", " a"}},
      {"gpt-2", "I've 42x", {"I", "'ve", " 42", "x"}},
      {"gpt-2", "a\n\nb", {"a", "\n", "\n", "b"}},
      {"gpt-2", "x = f(y);", {"x", " =", " f", "(", "y", ");"}},
      {"starcoder", "a12 3", {"a", "1", "2", " ", "3"}},
      {"qwen2", "x\n\nhello", {"x", "\n\n", "hello"}},
      {"qwen2", "abc123 I'VE", {"abc", "1", "2", "3", " I", "'VE"}},
      {"qwen2", "  foo()\n", {" ", " foo", "()\n"}},
      {"llama-bpe", "12345", {"123", "45"}},
      {"deepseek-coder", "ab 12\ncd", {"ab", " ", "1", "2", "\n", "cd"}},
      {"deepseek-llm", "ab 12", {"ab", " ", "12"}},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    CAPTURE(c.text);
    CHECK(split(named(c.name), c.text) == c.expect);
  }
  CHECK_FALSE(PreTokenizer::from_gguf_name("bogus").ok());
}

TEST_CASE("every byte lands in a piece, invalid UTF-8 included") {
  const char* texts[] = {"\xff\xfe" "ab", "a\xc3", "\xe4\xbd" " x", "ok \x80\x80\x80 42", ""};
  for (const auto* name : {"gpt-2", "starcoder", "qwen2", "llama-bpe"}) {
    const PreTokenizer pre = named(name);
    for (const char* t : texts) {
      std::string joined;
      for (const auto& p : split(pre, t)) joined += p;
      CHECK(joined == t);
    }
  }
}

TEST_CASE("a bad pattern is an error naming the step") {
  auto pre = PreTokenizer::create({SplitStep{"ok"}, SplitStep{"(unclosed"}});
  REQUIRE_FALSE(pre.ok());
  CHECK(pre.error().message.find("step 1") != std::string::npos);
}
