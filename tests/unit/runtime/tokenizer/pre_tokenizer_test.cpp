#include "runtime/tokenizer/pre_tokenizer.h"

#include <doctest/doctest.h>

#include <algorithm>

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
      {"deepseek-v3", "abc 1234", {"abc", " ", "123", "4"}},
      {"tekken", "HelloWorld foo", {"Hello", "World", " foo"}},
      {"gpt-4o", "HelloWorld's 12345", {"Hello", "World's", " ", "123", "45"}},
      {"bloom", "Hello, world!", {"Hello", ",", " world", "!"}},
      {"falcon", "a+b=123456", {"a", "+", "b", "=", "123", "456"}},
      {"chameleon", "ab12", {"ab", "1", "2"}},
      {"tiny_aya", "1234567", {"1", "234", "567"}},
      {"seed-coder", "ab12", {"ab", "1", "2"}},
      {"bailingmoe", "I'm", {"I", "'m"}},
      {"jais-2", "a     b", {"a", "    ", " b"}},
      {"command-r", "x1", {"x", "1"}},
      {"smollm", "x1", {"x", "1"}},
      {"dbrx", "12345", {"123", "45"}},
      {"qwen35", "ab1", {"ab", "1"}},
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

TEST_CASE("every GGUF pre-tokenizer name compiles and keeps every byte") {
  const auto names = PreTokenizer::gguf_names();
  // The names llama.cpp gives byte-level BPE models that issue 12 lists.
  for (const char* must : {"llama3", "deepseek-llm", "deepseek-coder", "falcon", "mpt", "starcoder", "gpt-2",
                           "refact", "command-r", "qwen2", "stablelm2", "olmo", "dbrx", "smaug-bpe", "poro-chat",
                           "jais", "tekken", "smollm", "codeshell", "bloom", "gpt3-finnish", "exaone", "chameleon",
                           "minerva-7b", "deepseek-v3", "viking", "chatglm-bpe", "gpt-4o"}) {
    CAPTURE(must);
    CHECK(std::find(names.begin(), names.end(), std::string_view(must)) != names.end());
  }
  const char* texts[] = {"Hello World! I'VE 1234567 x=f(y);\n\n\tdef  \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x81",
                         "\xff\xfe ab\xc3", "", "   ", "<sentinel:12> IMGIMGABZ"};
  for (auto name : names) {
    CAPTURE(name);
    auto pre = PreTokenizer::from_gguf_name(name);
    REQUIRE_MESSAGE(pre.ok(), (pre.ok() ? "" : pre.error().message));
    CHECK(pre->step_count() > 0);
    for (const char* t : texts) {
      std::string joined;
      for (const auto& p : split(*pre, t)) {
        CHECK_FALSE(p.empty());
        joined += p;
      }
      CHECK(joined == t);
    }
  }
  const auto unknown = PreTokenizer::from_gguf_name("kimi-k2");
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error().message.find("unknown pre-tokenizer 'kimi-k2'") != std::string::npos);
  CHECK(PreTokenizer::gguf_name_ignores_merges("llama-bpe"));
  CHECK(PreTokenizer::gguf_name_ignores_merges("tekken"));
  CHECK_FALSE(PreTokenizer::gguf_name_ignores_merges("qwen2"));
}

TEST_CASE("a bad pattern is an error naming the step") {
  auto pre = PreTokenizer::create({SplitStep{"ok"}, SplitStep{"(unclosed"}});
  REQUIRE_FALSE(pre.ok());
  CHECK(pre.error().message.find("step 1") != std::string::npos);
}
