// Tokenizer::from_hf_json on hand-written tokenizer.json files.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "runtime/tokenizer/tokenizer.h"

using ghostd::runtime::byte_level_encode;
using ghostd::runtime::Tokenizer;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// A temp folder removed at the end of the test.
struct TempDir {
  fs::path path = fs::temp_directory_path() / ("ghostd_tok_" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
  fs::path write(const std::string& name, const std::string& text) const {
    const fs::path p = path / name;
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
};

std::string piece(std::string_view raw) { return byte_level_encode(raw); }

// Byte-level vocabulary: ids 0..255 are the bytes, then the merged words.
json base_tokenizer() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[piece(std::string(1, static_cast<char>(b)))] = b;
  const char* words[] = {"he", "ll", "hell", "hello", "12", "o "};
  int id = 256;
  for (const char* w : words) vocab[piece(w)] = id++;
  json merges = json::array({json::array({"h", "e"}), json::array({"l", "l"}), json::array({"he", "ll"}),
                             json::array({"hell", "o"}), json::array({"1", "2"}),
                             json::array({"o", piece(" ")})});
  return json{
      {"version", "1.0"},
      {"added_tokens",
       json::array({
           {{"id", 300}, {"content", "<|fim_prefix|>"}, {"special", true}, {"lstrip", false},
            {"rstrip", false}, {"normalized", false}},
           {{"id", 301}, {"content", "<|fim"}, {"special", true}},
           {{"id", 302}, {"content", "<mask>"}, {"special", false}, {"lstrip", true}, {"rstrip", true},
            {"normalized", true}},
           {{"id", 303}, {"content", "<s>"}, {"special", true}},
       })},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}},
  };
}

Tokenizer load(const TempDir& dir, const json& j) {
  auto tok = Tokenizer::from_hf_json(dir.write("tokenizer.json", j.dump()));
  REQUIRE_MESSAGE(tok.ok(), (tok.ok() ? "" : tok.error().message));
  return std::move(tok).value();
}

std::vector<int32_t> ids(std::initializer_list<int32_t> l) { return l; }

}  // namespace

TEST_CASE("array-form and string-form merges give the same tokenizer") {
  TempDir dir;
  json j = base_tokenizer();
  const Tokenizer arrays = load(dir, j);
  CHECK(arrays.encode("hello") == ids({259}));
  CHECK(arrays.encode("hello hello") == ids({259, ' ', 259}));
  json strings = json::array();
  for (const auto& m : j["model"]["merges"]) strings.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
  j["model"]["merges"] = strings;
  const Tokenizer strs = load(dir, j);
  CHECK(strs.encode("hello") == ids({259}));
  CHECK(strs.vocab_size() == 304);
  // Byte-level pre-tokenizer keeps "o" and " " apart, so merge "o Ġ" never fires.
  CHECK(strs.encode("hello ") == ids({259, ' '}));
}

TEST_CASE("added tokens: longest match, special vs parse_special, lstrip/rstrip") {
  TempDir dir;
  const Tokenizer tok = load(dir, base_tokenizer());
  CHECK(tok.encode("<|fim_prefix|>hello") == ids({300, 259}));
  CHECK(tok.encode("<|fimhello") == ids({301, 259}));
  CHECK(tok.encode("a <mask> b") == ids({'a', 302, 'b'}));
  CHECK(tok.encode("a  \t<mask>\n b") == ids({'a', 302, 'b'}));
  // Special tokens are text without parse_special; non-special ones still split out.
  const auto plain = tok.encode("<|fim_prefix|><mask>", false);
  CHECK(plain.back() == 302);
  CHECK(plain.size() > 2);
  CHECK(tok.decode(plain) == "<|fim_prefix|><mask>");
  CHECK(tok.is_special(300));
  CHECK_FALSE(tok.is_special(302));
  CHECK(tok.find_token("<|fim_prefix|>") == 300);
  CHECK(tok.decode(ids({300, 259, 302}), true) == "hello<mask>");
  CHECK(tok.token_bytes(300) == "<|fim_prefix|>");
}

TEST_CASE("NFC normalizer inside a Sequence") {
  TempDir dir;
  json j = base_tokenizer();
  const std::string decomposed = "e\xCC\x81";  // e + COMBINING ACUTE ACCENT
  CHECK(load(dir, j).encode(decomposed) == ids({'e', 0xCC, 0x81}));
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", json::array({{{"type", "NFC"}}})}};
  const Tokenizer tok = load(dir, j);
  CHECK(tok.encode(decomposed) == ids({0xC3, 0xA9}));  // U+00E9
  CHECK(tok.encode("hello") == ids({259}));
}

TEST_CASE("Split + Digits + ByteLevel sequence with the Qwen2 regex") {
  TempDir dir;
  json j = base_tokenizer();
  const std::string qwen2 =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       json::array({
           {{"type", "Split"}, {"pattern", {{"Regex", qwen2}}}, {"behavior", "Isolated"}, {"invert", false}},
           {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}},
       })}};
  const Tokenizer qwen = load(dir, j);
  CHECK(qwen.encode("12") == ids({'1', '2'}));  // \p{N} splits digits apart
  CHECK(qwen.encode("hello 12") == ids({259, ' ', '1', '2'}));
  CHECK(qwen.encode("x\n\nhello") == ids({'x', '\n', '\n', 259}));

  // Contiguous digits keep "12" whole; individual digits split it.
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers", json::array({{{"type", "Digits"}, {"individual_digits", false}},
                                                       {{"type", "ByteLevel"}, {"add_prefix_space", false},
                                                        {"use_regex", false}}})}};
  CHECK(load(dir, j).encode("a12") == ids({'a', 260}));
  j["pre_tokenizer"]["pretokenizers"][0]["individual_digits"] = true;
  CHECK(load(dir, j).encode("a12") == ids({'a', '1', '2'}));

  // Without any pre-tokenizer the "o Ġ" merge crosses the word boundary.
  j["pre_tokenizer"] = nullptr;
  CHECK(load(dir, j).encode("o ") == ids({261}));

  // String pattern, Removed behavior.
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"String", "-"}}}, {"behavior", "Removed"}};
  CHECK(load(dir, j).encode("he-ll") == ids({256, 257}));
}

TEST_CASE("ByteLevel add_prefix_space and TemplateProcessing BOS") {
  TempDir dir;
  json j = base_tokenizer();
  j["pre_tokenizer"]["add_prefix_space"] = true;
  j["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                                 {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})}};
  const Tokenizer tok = load(dir, j);
  CHECK(tok.encode("he") == ids({' ', 256}));
  CHECK(tok.encode(" he") == ids({' ', 256}));
  CHECK(tok.add_bos_default());
  CHECK(tok.bos_id() == 303);
}

TEST_CASE("tokenizer_config.json's add_bos_token overrides the post-processor's BOS") {
  TempDir dir;
  json j = base_tokenizer();
  CHECK_FALSE(load(dir, j).add_bos_default());
  // Named by bos_token, as a string or an AddedToken-style object.
  dir.write("tokenizer_config.json", R"({"add_bos_token": true, "bos_token": "<s>"})");
  Tokenizer tok = load(dir, j);
  CHECK(tok.add_bos_default());
  CHECK(tok.bos_id() == 303);
  dir.write("tokenizer_config.json", R"({"add_bos_token": true, "bos_token": {"content": "<mask>"}})");
  tok = load(dir, j);
  CHECK(tok.add_bos_default());
  CHECK(tok.bos_id() == 302);
  // false wins over a template that starts with <s>; absent or null leaves the template's say.
  j["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                                 {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})}};
  dir.write("tokenizer_config.json", R"({"add_bos_token": false, "bos_token": "<s>"})");
  CHECK_FALSE(load(dir, j).add_bos_default());
  dir.write("tokenizer_config.json", R"({"add_bos_token": null, "model_max_length": 8})");
  CHECK(load(dir, j).add_bos_default());
  dir.write("tokenizer_config.json", R"({"add_bos_token": true})");
  CHECK(load(dir, j).bos_id() == 303);

  struct Case {
    std::string text;
    std::string expect;
  };
  j["post_processor"] = nullptr;
  const std::vector<Case> bad = {
      {R"({"add_bos_token": "yes"})", "add_bos_token: expected true or false"},
      {R"({"add_bos_token": true, "bos_token": "<nope>"})", "bos_token: \"<nope>\" is not in the vocabulary"},
      {R"({"add_bos_token": true, "bos_token": {"id": 3}})", "bos_token: expected a string"},
      {R"({"add_bos_token": true})", "add_bos_token: true, but no bos_token"},
      {"[1, 2", "not valid JSON"},
  };
  for (const auto& c : bad) {
    CAPTURE(c.text);
    const auto cfg = dir.write("tokenizer_config.json", c.text);
    auto t = Tokenizer::from_hf_json(dir.write("tokenizer.json", j.dump()));
    REQUIRE_FALSE(t.ok());
    CHECK(t.error().message.find(cfg.string()) != std::string::npos);
    CHECK_MESSAGE(t.error().message.find(c.expect) != std::string::npos, t.error().message);
  }
}

TEST_CASE("malformed tokenizer.json files give errors naming the file and field") {
  TempDir dir;
  struct Case {
    std::string name;
    std::string text;
    std::string expect;
  };
  json j = base_tokenizer();
  std::vector<Case> cases;
  cases.push_back({"not_json", "{ this is not json", "not valid JSON"});
  json no_model = j;
  no_model.erase("model");
  cases.push_back({"no_model", no_model.dump(), "model: missing"});
  json no_vocab = j;
  no_vocab["model"].erase("vocab");
  cases.push_back({"no_vocab", no_vocab.dump(), "model.vocab"});
  json no_merges = j;
  no_merges["model"].erase("merges");
  cases.push_back({"no_merges", no_merges.dump(), "model.merges"});
  json bad_merge = j;
  bad_merge["model"]["merges"].push_back(json::array({"he", "zzz"}));
  cases.push_back({"bad_merge", bad_merge.dump(), "unknown token 'zzz'"});
  json bad_merge_form = j;
  bad_merge_form["model"]["merges"].push_back(42);
  cases.push_back({"bad_merge_form", bad_merge_form.dump(), "model.merges[6]"});
  json word_piece = j;
  word_piece["model"]["type"] = "WordPiece";
  cases.push_back({"word_piece", word_piece.dump(), "model.type"});
  json bad_pre = j;
  bad_pre["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
  cases.push_back({"bad_pre", bad_pre.dump(), "pre_tokenizer.type"});
  json bad_regex = j;
  bad_regex["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  cases.push_back({"bad_regex", bad_regex.dump(), "pre_tokenizer"});
  json bad_norm = j;
  bad_norm["normalizer"] = {{"type", "Lowercase"}};
  cases.push_back({"bad_norm", bad_norm.dump(), "normalizer.type"});
  json bad_added = j;
  bad_added["added_tokens"][0].erase("id");
  cases.push_back({"bad_added", bad_added.dump(), "added_tokens[0]"});
  for (const auto& c : cases) {
    CAPTURE(c.name);
    const auto path = dir.write(c.name + ".json", c.text);
    auto tok = Tokenizer::from_hf_json(path);
    REQUIRE_FALSE(tok.ok());
    CHECK(tok.error().message.find(path.string()) != std::string::npos);
    CHECK_MESSAGE(tok.error().message.find(c.expect) != std::string::npos, tok.error().message);
  }
  auto missing = Tokenizer::from_hf_json(dir.path / "absent.json");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message.find("absent.json") != std::string::npos);
}
