#include "runtime/tokenizer/tokenizer.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <unordered_map>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <thread>
#include <utility>

using ghostd::runtime::StreamDecoder;
using ghostd::runtime::Tokenizer;
using ghostd::runtime::VocabSpec;

namespace {

const std::string kDataDir = std::string(GHOSTD_TEST_DATA) + "/tokenizer/";

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in, "cannot open " << path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Minimal GGUF v3 metadata reader: enough to pull the tokenizer keys out of
// the vocab-only test files.
class GgufReader {
 public:
  explicit GgufReader(std::string data) : d_(std::move(data)) {}

  VocabSpec read_vocab() {
    VocabSpec spec;
    REQUIRE(d_.compare(0, 4, "GGUF") == 0);
    pos_ = 4;
    REQUIRE(get<uint32_t>() == 3);
    get<uint64_t>();  // tensor count
    const auto kv_count = get<uint64_t>();
    for (uint64_t i = 0; i < kv_count; ++i) {
      const std::string key = str();
      const auto type = get<uint32_t>();
      if (key == "tokenizer.ggml.tokens") {
        spec.tokens = string_array(type);
      } else if (key == "tokenizer.ggml.merges") {
        spec.merges = string_array(type);
      } else if (key == "tokenizer.ggml.token_type") {
        REQUIRE(type == 9);
        REQUIRE(get<uint32_t>() == 5);
        const auto n = get<uint64_t>();
        for (uint64_t j = 0; j < n; ++j) spec.token_types.push_back(get<int32_t>());
      } else if (key == "tokenizer.ggml.pre") {
        REQUIRE(type == 8);
        spec.pre = str();
      } else if (key == "tokenizer.ggml.model") {
        REQUIRE(type == 8);
        spec.model = str();
      } else if (key == "tokenizer.ggml.scores") {
        REQUIRE(type == 9);
        REQUIRE(get<uint32_t>() == 6);
        const auto n = get<uint64_t>();
        for (uint64_t j = 0; j < n; ++j) spec.scores.push_back(get<float>());
      } else if (key == "tokenizer.ggml.add_bos_token" && type == 7) {
        spec.add_bos = get<uint8_t>() != 0;
      } else if (key == "tokenizer.ggml.add_space_prefix" && type == 7) {
        spec.add_space_prefix = get<uint8_t>() != 0;
      } else if (key == "tokenizer.ggml.unknown_token_id" && type == 4) {
        spec.unk_id = static_cast<int32_t>(get<uint32_t>());
      } else if (key == "tokenizer.ggml.bos_token_id" && type == 4) {
        spec.bos_id = static_cast<int32_t>(get<uint32_t>());
      } else if (key == "tokenizer.ggml.eos_token_id" && type == 4) {
        spec.eos_id = static_cast<int32_t>(get<uint32_t>());
      } else {
        skip(type);
      }
    }
    return spec;
  }

 private:
  template <class T>
  T get() {
    REQUIRE(pos_ + sizeof(T) <= d_.size());
    T v;
    std::memcpy(&v, d_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string str() {
    const auto n = get<uint64_t>();
    REQUIRE(pos_ + n <= d_.size());
    std::string s = d_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  std::vector<std::string> string_array(uint32_t type) {
    REQUIRE(type == 9);
    REQUIRE(get<uint32_t>() == 8);
    const auto n = get<uint64_t>();
    std::vector<std::string> out;
    out.reserve(n);
    for (uint64_t j = 0; j < n; ++j) out.push_back(str());
    return out;
  }
  void skip(uint32_t type) {
    static constexpr size_t kSizes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    REQUIRE(type <= 12);
    if (type == 8) {
      str();
    } else if (type == 9) {
      const auto elem = get<uint32_t>();
      const auto n = get<uint64_t>();
      for (uint64_t j = 0; j < n; ++j) skip(elem);
    } else {
      pos_ += kSizes[type];
    }
  }

  std::string d_;
  size_t pos_ = 0;
};

Tokenizer load_gguf_vocab(const std::string& model) {
  GgufReader reader(read_file(kDataDir + "ggml-vocab-" + model + ".gguf"));
  auto tok = Tokenizer::from_vocab(reader.read_vocab());
  REQUIRE_MESSAGE(tok.ok(), (tok.ok() ? "" : tok.error().message));
  return std::move(tok).value();
}

struct Vector {
  std::string text;
  std::vector<int32_t> ids;
};

std::vector<Vector> load_vectors(const std::string& model) {
  const std::string inp = read_file(kDataDir + "ggml-vocab-" + model + ".gguf.inp");
  const std::string out = read_file(kDataDir + "ggml-vocab-" + model + ".gguf.out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<Vector> vectors;
  size_t pos = 0;
  while (pos < inp.size()) {
    const size_t end = inp.find(sep, pos);
    REQUIRE(end != std::string::npos);
    vectors.push_back({inp.substr(pos, end - pos), {}});
    pos = end + sep.size();
  }
  std::istringstream lines(out);
  std::string line;
  for (auto& v : vectors) {
    REQUIRE(std::getline(lines, line));
    std::istringstream ids(line);
    int32_t id = 0;
    while (ids >> id) v.ids.push_back(id);
  }
  return vectors;
}

void check_conformance(const std::string& model) {
  const Tokenizer tok = load_gguf_vocab(model);
  const auto vectors = load_vectors(model);
  REQUIRE(vectors.size() > 40);
  for (const auto& v : vectors) {
    CAPTURE(v.text);
    CHECK(tok.encode(v.text, /*parse_special=*/false) == v.ids);
    CHECK(tok.decode_text(tok.encode(v.text, false)) == v.text);
    CHECK(tok.decode_text(v.ids) == v.text);
  }
}

}  // namespace

TEST_CASE("gpt-2 vocabulary matches every Hugging Face vector") { check_conformance("gpt-2"); }

TEST_CASE("starcoder vocabulary matches every Hugging Face vector") { check_conformance("starcoder"); }

TEST_CASE("llama-spm (SentencePiece) vocabulary matches every Hugging Face vector") {
  check_conformance("llama-spm");
}

TEST_CASE("llama-spm: dummy prefix, byte fallback, control tokens and decode") {
  const Tokenizer tok = load_gguf_vocab("llama-spm");
  CHECK(tok.is_sentencepiece());
  CHECK(tok.adds_space_prefix());
  CHECK(tok.vocab_size() == 32000);
  CHECK(tok.bos_id() == 1);
  CHECK(tok.eos_id() == 2);
  CHECK(tok.add_bos_default());
  // "▁Hello" carries the dummy prefix; without it the word starts bare.
  const auto with = tok.encode("Hello", false);
  const auto without = tok.encode("Hello", false, /*dummy_prefix=*/false);
  REQUIRE(with.size() == 1);
  CHECK(tok.token_bytes(with[0]) == " Hello");
  CHECK(with != without);
  CHECK(tok.decode(without) == "Hello");
  CHECK(tok.decode(with) == " Hello");
  CHECK(tok.decode_text(with) == "Hello");
  // A character missing from the vocabulary falls back to <0xXX> tokens.
  const std::string rare = "\xF0\x9F\xA6\x99";  // U+1F999
  const auto bytes = tok.encode(rare, false, false);
  REQUIRE(bytes.size() == 4);
  CHECK(bytes[0] == *tok.find_token("<0xF0>"));
  CHECK(tok.decode(bytes) == rare);
  // Control tokens split out only with parse_special; the prefix follows them.
  const auto ctl = tok.encode("<s>a", true);
  REQUIRE(ctl.size() == 2);
  CHECK(ctl[0] == 1);
  CHECK(tok.token_bytes(ctl[1]) == " a");
  CHECK(tok.is_special(1));
  CHECK(tok.decode(ctl, /*skip_special=*/true) == " a");
  CHECK(tok.encode("<s>a", false).front() != 1);
  // Streaming byte-fallback tokens: nothing until the character completes.
  StreamDecoder dec(tok);
  CHECK(dec.push(bytes[0]).empty());
  CHECK(dec.push(bytes[1]).empty());
  CHECK(dec.push(bytes[2]).empty());
  CHECK(dec.push(bytes[3]) == rare);
  CHECK(dec.push(with[0]) == " Hello");
  CHECK(dec.flush().empty());
}

TEST_CASE("SentencePiece from_vocab errors name the field") {
  VocabSpec spec;
  spec.origin = "m.gguf";
  spec.model = "llama";
  spec.tokens = {"<unk>", "\xE2\x96\x81", "a", "\xE2\x96\x81" "a"};
  spec.token_types = {2, 1, 1, 1};
  auto missing = Tokenizer::from_vocab(spec);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message.find("m.gguf: tokenizer.ggml.scores: missing") == 0);
  spec.scores = {0, -1};
  CHECK(Tokenizer::from_vocab(spec).error().message.find("tokenizer.ggml.scores: has 2 entries") != std::string::npos);
  spec.model = "bert";
  CHECK(Tokenizer::from_vocab(spec).error().message.find("tokenizer.ggml.model") != std::string::npos);
  spec.model = "llama";
  spec.scores = {0, -1, -2, -3};
  auto ok = Tokenizer::from_vocab(spec);
  REQUIRE(ok.ok());
  // No byte pieces: an unknown character is one <unk>.
  CHECK(ok->encode("a\xE4\xBD\xA0" "a", false) == std::vector<int32_t>{3, 0, 2});
  CHECK(ok->encode("a a", false) == std::vector<int32_t>{3, 3});
}

namespace {

// The llama-spm vocabulary as Hugging Face's converter writes it into a
// tokenizer.json (SentencePieceExtractor): every split of every piece into
// two pieces is a merge, ordered by the piece's score, then by ids.
nlohmann::json hf_json_from_spm(const VocabSpec& spec) {
  using nlohmann::json;
  std::unordered_map<std::string, int32_t> id;
  for (size_t i = 0; i < spec.tokens.size(); ++i) id.emplace(spec.tokens[i], static_cast<int32_t>(i));
  struct Merge {
    float score;
    int32_t piece, left, right;
  };
  std::vector<Merge> merges;
  for (size_t i = 0; i < spec.tokens.size(); ++i) {
    const std::string& p = spec.tokens[i];
    for (size_t cut = 1; cut < p.size(); ++cut) {
      if ((static_cast<unsigned char>(p[cut]) & 0xC0) == 0x80) continue;  // inside a character
      auto l = id.find(p.substr(0, cut)), r = id.find(p.substr(cut));
      if (l != id.end() && r != id.end()) merges.push_back({spec.scores[i], static_cast<int32_t>(i), l->second, r->second});
    }
  }
  std::stable_sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.piece != b.piece) return a.piece < b.piece;
    return a.left != b.left ? a.left < b.left : a.right < b.right;
  });
  json vocab = json::object();
  for (size_t i = 0; i < spec.tokens.size(); ++i) vocab[spec.tokens[i]] = i;
  json jm = json::array();
  for (const auto& m : merges) jm.push_back(spec.tokens[static_cast<size_t>(m.left)] + " " + spec.tokens[static_cast<size_t>(m.right)]);
  json added = json::array();
  for (int i = 0; i < 3; ++i) added.push_back({{"id", i}, {"content", spec.tokens[static_cast<size_t>(i)]}, {"special", true}});
  return {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", jm}, {"byte_fallback", true}, {"unk_token", "<unk>"}}},
          {"added_tokens", added},
          {"post_processor", {{"type", "TemplateProcessing"}, {"single", json::array({{{"SpecialToken", {{"id", "<s>"}}}}})}}}};
}

}  // namespace

TEST_CASE("llama-spm as a Hugging Face tokenizer.json (merges by rank, byte fallback) matches every vector") {
  GgufReader reader(read_file(kDataDir + "ggml-vocab-llama-spm.gguf"));
  const VocabSpec spec = reader.read_vocab();
  const nlohmann::json base = hf_json_from_spm(spec);
  // The two ways tokenizer.json files say it: Llama-2's normalizers, and the
  // newer Metaspace pre-tokenizer.
  nlohmann::json legacy = base, metaspace = base;
  legacy["normalizer"] = {{"type", "Sequence"},
                          {"normalizers",
                           {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
                            {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}}}};
  legacy["pre_tokenizer"] = nullptr;
  metaspace["normalizer"] = nullptr;
  metaspace["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "first"}, {"split", false}};
  const auto vectors = load_vectors("llama-spm");
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("ghostd_spm_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  for (const auto* j : {&legacy, &metaspace}) {
    const auto path = dir / "tokenizer.json";
    std::ofstream(path, std::ios::binary) << j->dump();
    auto tok = Tokenizer::from_hf_json(path);
    REQUIRE_MESSAGE(tok.ok(), (tok.ok() ? "" : tok.error().message));
    CHECK(tok->is_sentencepiece());
    CHECK(tok->bos_id() == 1);
    for (const auto& v : vectors) {
      CAPTURE(v.text);
      CHECK(tok->encode(v.text, false) == v.ids);
      CHECK(tok->decode_text(v.ids) == v.text);
    }
    // After a special token the legacy normalizer prepends again; "first" does not.
    const auto after = tok->encode("<s>a", true);
    REQUIRE(after.size() == 2);
    CHECK(tok->token_bytes(after[1]) == (j == &legacy ? " a" : "a"));
  }
  // Metaspace with split: merges stay within words (U+2581 starts each).
  metaspace["pre_tokenizer"]["split"] = true;
  std::ofstream(dir / "tokenizer.json", std::ios::binary) << metaspace.dump();
  auto split = Tokenizer::from_hf_json(dir / "tokenizer.json");
  REQUIRE(split.ok());
  for (int32_t id : split->encode("a  b", false)) CHECK(split->token_bytes(id) != "  ");
  // byte_fallback without U+2581 handling is refused, naming the field.
  nlohmann::json bad = base;
  std::ofstream(dir / "tokenizer.json", std::ios::binary) << bad.dump();
  auto refused = Tokenizer::from_hf_json(dir / "tokenizer.json");
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("model.byte_fallback") != std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST_CASE("random bytes round-trip, invalid UTF-8 included") {
  const Tokenizer tok = load_gguf_vocab("gpt-2");
  std::mt19937 rng(1234);
  for (int i = 0; i < 300; ++i) {
    std::string s(rng() % 64, '\0');
    for (auto& c : s) {
      // Mix ASCII text, whitespace and raw high bytes.
      const auto r = rng() % 4;
      c = static_cast<char>(r == 0 ? rng() % 256 : r == 1 ? " \t\n'"[rng() % 4] : 'a' + rng() % 26);
    }
    CAPTURE(s);
    CHECK(tok.decode(tok.encode(s)) == s);
  }
}

TEST_CASE("special tokens, lookups and accessors on the gpt-2 vocabulary") {
  const Tokenizer tok = load_gguf_vocab("gpt-2");
  CHECK(tok.vocab_size() == 50257);
  const auto eot = tok.find_token("<|endoftext|>");
  REQUIRE(eot.has_value());
  CHECK(*eot == 50256);
  CHECK(tok.is_special(*eot));
  CHECK_FALSE(tok.is_special(464));
  CHECK(tok.find_token("\xC4\xA0the") == 262);  // "Ġthe"
  CHECK(tok.token_bytes(262) == " the");
  CHECK_FALSE(tok.find_token("no such piece").has_value());
  CHECK(tok.token_bytes(-1).empty());
  CHECK(tok.token_bytes(1 << 30).empty());

  const std::string text = "a<|endoftext|>b";
  const auto with = tok.encode(text, true);
  CHECK(with == std::vector<int32_t>{64, 50256, 65});
  const auto without = tok.encode(text, false);
  CHECK(without.size() > 3);
  CHECK(tok.decode(without) == text);
  CHECK(tok.decode(with, /*skip_special=*/true) == "ab");
  CHECK(tok.decode(with) == text);
}

TEST_CASE("StreamDecoder holds back split UTF-8 sequences") {
  const Tokenizer tok = load_gguf_vocab("gpt-2");
  const std::string text = "hi \xF0\x9F\x98\x81\xF0\x9F\xA6\x99 \xE4\xBD\xA0\xE5\xA5\xBD!";  // emoji, CJK
  const auto ids = tok.encode(text);
  // At least one token must end inside a multi-byte character for the test to mean something.
  bool split_seen = false;
  for (int32_t id : ids) {
    const auto& b = tok.token_bytes(id);
    if (!b.empty() && (static_cast<unsigned char>(b.back()) & 0x80) != 0) split_seen = true;
  }
  CHECK(split_seen);
  StreamDecoder dec(tok);
  std::string out;
  for (int32_t id : ids) {
    const std::string piece = dec.push(id);
    // Every emitted chunk is whole UTF-8.
    size_t i = 0;
    while (i < piece.size()) {
      const auto c = static_cast<unsigned char>(piece[i]);
      const size_t len = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
      REQUIRE(i + len <= piece.size());
      i += len;
    }
    out += piece;
  }
  out += dec.flush();
  CHECK(out == text);

  // An incomplete tail comes out on flush.
  StreamDecoder tail(tok);
  const auto first_byte = tok.encode("\xF0");
  std::string got;
  for (int32_t id : first_byte) got += tail.push(id);
  CHECK(got.empty());
  CHECK(tail.flush() == "\xF0");
}

TEST_CASE("encode is safe from several threads at once") {
  const Tokenizer tok = load_gguf_vocab("starcoder");
  const auto vectors = load_vectors("starcoder");
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round) {
        for (const auto& v : vectors) {
          if (tok.encode(v.text, false) != v.ids) ++failures[static_cast<size_t>(t)];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int f : failures) CHECK(f == 0);
}

TEST_CASE("from_vocab rejects bad specs") {
  VocabSpec spec;
  CHECK(Tokenizer::from_vocab(spec).error().message.find("tokenizer.ggml.tokens") != std::string::npos);
  spec.tokens = {"a", "b", "ab"};
  spec.merges = {"a b"};
  spec.pre = "no-such-pre";
  CHECK(Tokenizer::from_vocab(spec).error().message.find("no-such-pre") != std::string::npos);
  spec.pre = "qwen2";
  spec.merges = {"a c"};
  CHECK(Tokenizer::from_vocab(spec).error().message.find("unknown token 'c'") != std::string::npos);
  spec.merges = {"ab"};
  CHECK(Tokenizer::from_vocab(spec).error().message.find("tokenizer.ggml.merges[0]") != std::string::npos);
  spec.merges = {"a b"};
  spec.token_types = {1, 1};
  CHECK(Tokenizer::from_vocab(spec).error().message.find("tokenizer.ggml.token_type") != std::string::npos);
  spec.token_types = {1, 1, 1};
  auto ok = Tokenizer::from_vocab(spec);
  REQUIRE(ok.ok());
  CHECK(ok->encode("abab") == std::vector<int32_t>{2, 2});
}

TEST_CASE("from_vocab: add_bos from tokenizer.ggml.add_bos_token, else SentencePiece yes and byte-level BPE no") {
  struct Case {
    std::string model;
    std::optional<bool> add_bos;
    int32_t bos_id;
    bool expect;
  };
  const std::vector<Case> cases = {
      {"gpt2", std::nullopt, 0, false}, {"gpt2", true, 0, true},   {"gpt2", false, 0, false},
      {"gpt2", true, -1, false},        {"llama", std::nullopt, 0, true}, {"llama", false, 0, false},
      {"llama", true, 0, true},
  };
  for (const auto& c : cases) {
    CAPTURE(c.model);
    CAPTURE(c.add_bos.value_or(-1));
    VocabSpec spec;
    spec.model = c.model;
    spec.tokens = c.model == "gpt2" ? std::vector<std::string>{"<s>", "a", "b", "ab"}
                                    : std::vector<std::string>{"<s>", "\xE2\x96\x81", "a", "b"};
    if (c.model == "gpt2") spec.merges = {"a b"};
    else spec.scores = {0, -1, -2, -3};
    spec.pre = "gpt-2";
    spec.bos_id = c.bos_id;
    spec.add_bos = c.add_bos;
    auto tok = Tokenizer::from_vocab(spec);
    REQUIRE_MESSAGE(tok.ok(), (tok.ok() ? "" : tok.error().message));
    CHECK(tok->add_bos_default() == c.expect);
  }
  // The shared vocabularies keep what they did: Llama's adds BOS, the BPE ones do not.
  CHECK(load_gguf_vocab("llama-spm").add_bos_default());
  CHECK_FALSE(load_gguf_vocab("gpt-2").add_bos_default());
  CHECK_FALSE(load_gguf_vocab("starcoder").add_bos_default());
}

TEST_CASE("long words and whitespace runs stay fast and round-trip") {
  const Tokenizer tok = load_gguf_vocab("gpt-2");
  std::mt19937 rng(7);
  std::string word(200000, 'a');
  for (auto& c : word) c = static_cast<char>('a' + rng() % 26);
  const std::string spaces(200000, ' ');
  const std::string mixed = "x" + spaces + "y\n" + std::string(50000, '\n') + "z";
  for (const std::string* text : {&std::as_const(word), &spaces, &mixed}) {
    const auto ids = tok.encode(*text);
    CAPTURE(text->size());
    CHECK(ids.size() <= text->size());  // gpt-2 has no multi-space tokens
    CHECK(tok.decode(ids) == *text);
  }
}

TEST_CASE("starcoder FIM markers are special tokens found by content") {
  const Tokenizer tok = load_gguf_vocab("starcoder");
  const auto prefix = tok.find_token("<fim_prefix>");
  const auto suffix = tok.find_token("<fim_suffix>");
  REQUIRE(prefix.has_value());
  REQUIRE(suffix.has_value());
  CHECK(tok.is_special(*prefix));
  CHECK(tok.bos_id() == 0);
  CHECK(tok.eos_id() == 0);
  const std::string prompt = "<fim_prefix>def f():\n    <fim_suffix>\n<fim_middle>";
  const auto ids = tok.encode(prompt);
  CHECK(ids.front() == *prefix);
  CHECK(ids.back() == *tok.find_token("<fim_middle>"));
  CHECK(tok.decode(ids) == prompt);
  CHECK(tok.decode(ids, /*skip_special=*/true) == "def f():\n    \n");
  CHECK(tok.encode(prompt, /*parse_special=*/false).front() != *prefix);
}

TEST_CASE("from_vocab: control tokens are special, user-defined tokens always split out") {
  VocabSpec spec;
  spec.tokens = {"a", "b", "ab", "<ctl>", "<usr>"};
  spec.token_types = {1, 1, 1, 3, 4};
  spec.merges = {"a b"};
  spec.pre = "gpt-2";
  auto tok = Tokenizer::from_vocab(spec);
  REQUIRE(tok.ok());
  CHECK(tok->encode("ab<ctl>ab") == std::vector<int32_t>{2, 3, 2});
  CHECK(tok->encode("ab<usr>ab", false) == std::vector<int32_t>{2, 4, 2});
  CHECK(tok->is_special(3));
  CHECK_FALSE(tok->is_special(4));
  CHECK(tok->find_token("<usr>") == 4);
}
