// Loaders that turn a Hugging Face tokenizer.json or a GGUF vocabulary into a
// TokenizerConfig for Tokenizer::build.
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "runtime/tokenizer/tokenizer.h"

namespace ghostd::runtime {

namespace {

using nlohmann::json;

// Error helper: "<file>: <field>: <what>".
struct Where {
  std::string file;
  Error at(const std::string& field, const std::string& what) const {
    return Error{file + ": " + field + ": " + what};
  }
};

Result<SplitBehavior> parse_behavior(const json& j, const std::string& field, const Where& where) {
  if (!j.is_string()) return where.at(field, "expected a string");
  const auto& s = j.get_ref<const std::string&>();
  if (s == "Removed") return SplitBehavior::kRemoved;
  if (s == "Isolated") return SplitBehavior::kIsolated;
  if (s == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (s == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (s == "Contiguous") return SplitBehavior::kContiguous;
  return where.at(field, "unknown behavior '" + s + "'");
}

// A SentencePiece user-defined piece matched in raw text: U+2581 stands for a space.
std::string spm_piece_text_for_added(const std::string& piece) {
  std::string out;
  for (size_t i = 0; i < piece.size();) {
    if (piece.compare(i, 3, "\xE2\x96\x81") == 0) {
      out.push_back(' ');
      i += 3;
    } else {
      out.push_back(piece[i++]);
    }
  }
  return out;
}

bool bool_or(const json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

// What marks a tokenizer.json as SentencePiece-style: spaces become U+2581
// (a Replace normalizer or a Metaspace pre-tokenizer), a dummy prefix comes
// from a Prepend normalizer or Metaspace's prepend_scheme.
struct SpmStyle {
  bool prepend = false;    // normalizer Prepend("▁")
  bool replace = false;    // normalizer Replace(" " -> "▁")
  bool metaspace = false;  // pre_tokenizer Metaspace
  bool split = false;      // Metaspace split
  std::string prepend_scheme = "always";
};

constexpr std::string_view kMetaspace = "\xE2\x96\x81";

// Flattens a pre_tokenizer tree (Sequence of ByteLevel/Split/Digits) into steps.
Status parse_pre(const json& j, const std::string& field, const Where& where,
                 std::vector<SplitStep>& steps, bool& add_prefix_space, SpmStyle& spm) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    return where.at(field + ".type", "expected a pre-tokenizer object with a type");
  }
  const auto& type = j["type"].get_ref<const std::string&>();
  if (type == "Sequence") {
    const auto it = j.find("pretokenizers");
    if (it == j.end() || !it->is_array()) return where.at(field + ".pretokenizers", "expected an array");
    for (size_t i = 0; i < it->size(); ++i) {
      GHOSTD_TRY_STATUS(parse_pre((*it)[i], field + ".pretokenizers[" + std::to_string(i) + "]",
                                  where, steps, add_prefix_space, spm));
    }
  } else if (type == "ByteLevel") {
    // HF's defaults: add_prefix_space and use_regex are true when absent.
    if (bool_or(j, "add_prefix_space", true)) {
      if (!steps.empty()) {
        return where.at(field + ".add_prefix_space", "supported only on the first pre-tokenizer");
      }
      add_prefix_space = true;
    }
    if (bool_or(j, "use_regex", true)) steps.push_back(SplitStep{std::string(kGpt2Pattern)});
  } else if (type == "Split") {
    SplitStep step;
    const auto pat = j.find("pattern");
    if (pat == j.end() || !pat->is_object()) return where.at(field + ".pattern", "expected an object");
    if (pat->contains("Regex") && (*pat)["Regex"].is_string()) {
      step.pattern = (*pat)["Regex"].get<std::string>();
    } else if (pat->contains("String") && (*pat)["String"].is_string()) {
      step.pattern = (*pat)["String"].get<std::string>();
      step.literal = true;
    } else {
      return where.at(field + ".pattern", "expected {\"Regex\": ...} or {\"String\": ...}");
    }
    const auto beh = j.find("behavior");
    if (beh == j.end()) return where.at(field + ".behavior", "missing");
    auto behavior = parse_behavior(*beh, field + ".behavior", where);
    if (!behavior) return behavior.error();
    step.behavior = *behavior;
    step.invert = bool_or(j, "invert", false);
    steps.push_back(std::move(step));
  } else if (type == "Digits") {
    steps.push_back(SplitStep{bool_or(j, "individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)"});
  } else if (type == "Metaspace") {
    if (j.value("replacement", std::string(kMetaspace)) != kMetaspace) {
      return where.at(field + ".replacement", "only U+2581 is supported");
    }
    spm.metaspace = true;
    spm.split = bool_or(j, "split", true);
    if (auto it = j.find("prepend_scheme"); it != j.end() && it->is_string()) {
      spm.prepend_scheme = it->get<std::string>();
      if (spm.prepend_scheme != "always" && spm.prepend_scheme != "first" && spm.prepend_scheme != "never") {
        return where.at(field + ".prepend_scheme", "unknown scheme '" + spm.prepend_scheme + "'");
      }
    } else {
      spm.prepend_scheme = bool_or(j, "add_prefix_space", true) ? "always" : "never";
    }
  } else {
    return where.at(field + ".type", "unsupported pre-tokenizer '" + type +
                                         "' (expected ByteLevel, Split, Digits, Metaspace or Sequence)");
  }
  return {};
}

Status parse_normalizer(const json& j, const std::string& field, const Where& where, bool& nfc, SpmStyle& spm) {
  if (j.is_null()) return {};
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    return where.at(field + ".type", "expected a normalizer object with a type");
  }
  const auto& type = j["type"].get_ref<const std::string&>();
  if (type == "NFC") {
    nfc = true;
  } else if (type == "Prepend") {
    if (j.value("prepend", std::string()) != kMetaspace) return where.at(field + ".prepend", "only U+2581 is supported");
    spm.prepend = true;
  } else if (type == "Replace") {
    const auto pat = j.find("pattern");
    if (pat == j.end() || !pat->is_object() || pat->value("String", std::string()) != " " ||
        j.value("content", std::string()) != kMetaspace) {
      return where.at(field, "only Replace(\" \" -> U+2581) is supported");
    }
    spm.replace = true;
  } else if (type == "Sequence") {
    const auto it = j.find("normalizers");
    if (it == j.end() || !it->is_array()) return where.at(field + ".normalizers", "expected an array");
    for (size_t i = 0; i < it->size(); ++i) {
      GHOSTD_TRY_STATUS(
          parse_normalizer((*it)[i], field + ".normalizers[" + std::to_string(i) + "]", where, nfc, spm));
    }
  } else {
    return where.at(field + ".type",
                    "unsupported normalizer '" + type + "' (expected NFC, Prepend, Replace or Sequence)");
  }
  return {};
}

// TemplateProcessing whose single-sequence template starts with a special
// token: that token is the BOS the model expects.
std::optional<std::string> template_bos(const json& j) {
  if (!j.is_object()) return std::nullopt;
  const std::string type = j.value("type", "");
  if (type == "Sequence" && j.contains("processors") && j["processors"].is_array()) {
    for (const auto& p : j["processors"]) {
      if (auto bos = template_bos(p)) return bos;
    }
  }
  if (type != "TemplateProcessing") return std::nullopt;
  const auto it = j.find("single");
  if (it == j.end() || !it->is_array() || it->empty()) return std::nullopt;
  const auto& first = it->front();
  if (!first.is_object() || !first.contains("SpecialToken")) return std::nullopt;
  const auto& special = first["SpecialToken"];
  if (!special.is_object() || !special.contains("id") || !special["id"].is_string()) return std::nullopt;
  return special["id"].get<std::string>();
}

// Id of an added token or a vocabulary piece by its content, -1 if absent.
int32_t token_id(const TokenizerConfig& config, const std::string& content) {
  for (const auto& a : config.added) {
    if (a.content == content) return a.id;
  }
  for (size_t i = 0; i < config.pieces.size(); ++i) {
    if (config.pieces[i] == content) return static_cast<int32_t>(i);
  }
  return -1;
}

// tokenizer_config.json's add_bos_token overrides what the post-processor
// says (transformers' Llama and Gemma tokenizers rebuild their template from
// it); its bos_token (a string or {"content": ...}) names the token.
Status apply_tokenizer_config(const json& root, const Where& where, TokenizerConfig& config) {
  if (!root.is_object()) return where.at("(root)", "expected a JSON object");
  const auto add = root.find("add_bos_token");
  if (add == root.end() || add->is_null()) return {};
  if (!add->is_boolean()) return where.at("add_bos_token", "expected true or false, got " + add->dump());
  if (!add->get<bool>()) {
    config.add_bos = false;
    return {};
  }
  if (const auto bos = root.find("bos_token"); bos != root.end() && !bos->is_null()) {
    const json* content = bos->is_object() ? (bos->contains("content") ? &(*bos)["content"] : nullptr) : &*bos;
    if (content == nullptr || !content->is_string()) {
      return where.at("bos_token", "expected a string or an object with a string content");
    }
    const int32_t id = token_id(config, content->get<std::string>());
    if (id < 0) return where.at("bos_token", "\"" + content->get<std::string>() + "\" is not in the vocabulary");
    config.bos_id = id;
  }
  if (config.bos_id < 0) return where.at("add_bos_token", "true, but no bos_token is named here or in tokenizer.json");
  config.add_bos = true;
  return {};
}

Result<TokenizerConfig> parse_hf_json(const json& root, const Where& where) {
  TokenizerConfig config;
  config.origin = where.file;
  if (!root.is_object()) return where.at("(root)", "expected a JSON object");
  const auto model_it = root.find("model");
  if (model_it == root.end() || !model_it->is_object()) return where.at("model", "missing or not an object");
  const json& model = *model_it;
  if (model.contains("type")) {
    if (!model["type"].is_string() || model["type"].get<std::string>() != "BPE") {
      return where.at("model.type", "unsupported model type " + model["type"].dump() + " (expected \"BPE\")");
    }
  }
  const auto vocab_it = model.find("vocab");
  if (vocab_it == model.end() || !vocab_it->is_object()) {
    return where.at("model.vocab", "missing or not an object of piece -> id");
  }
  for (const auto& [piece, id] : vocab_it->items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
      return where.at("model.vocab[\"" + piece + "\"]", "expected a non-negative integer id");
    }
    const auto i = static_cast<size_t>(id.get<int64_t>());
    if (i >= config.pieces.size()) config.pieces.resize(i + 1);
    config.pieces[i] = piece;
  }
  const auto merges_it = model.find("merges");
  if (merges_it == model.end() || !merges_it->is_array()) return where.at("model.merges", "missing or not an array");
  config.merges.reserve(merges_it->size());
  for (size_t i = 0; i < merges_it->size(); ++i) {
    const json& m = (*merges_it)[i];
    const std::string field = "model.merges[" + std::to_string(i) + "]";
    if (m.is_string()) {
      const auto& s = m.get_ref<const std::string&>();
      const size_t space = s.find(' ', 1);
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        return where.at(field, "expected \"a b\", got \"" + s + "\"");
      }
      config.merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      config.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      return where.at(field, "expected \"a b\" or [\"a\", \"b\"]");
    }
  }
  config.ignore_merges = bool_or(model, "ignore_merges", false);
  if (auto it = root.find("added_tokens"); it != root.end() && !it->is_null()) {
    if (!it->is_array()) return where.at("added_tokens", "expected an array");
    for (size_t i = 0; i < it->size(); ++i) {
      const json& t = (*it)[i];
      const std::string field = "added_tokens[" + std::to_string(i) + "]";
      if (!t.is_object() || !t.contains("content") || !t["content"].is_string() || !t.contains("id") ||
          !t["id"].is_number_integer() || t["id"].get<int64_t>() < 0 || t["id"].get<int64_t>() > INT32_MAX) {
        return where.at(field, "expected an object with string content and a non-negative id");
      }
      AddedToken a;
      a.content = t["content"].get<std::string>();
      a.id = static_cast<int32_t>(t["id"].get<int64_t>());
      a.special = bool_or(t, "special", false);
      a.lstrip = bool_or(t, "lstrip", false);
      a.rstrip = bool_or(t, "rstrip", false);
      a.normalized = bool_or(t, "normalized", !a.special);
      if (a.content.empty()) return where.at(field + ".content", "empty");
      config.added.push_back(std::move(a));
    }
  }
  SpmStyle spm;
  if (auto it = root.find("normalizer"); it != root.end()) {
    GHOSTD_TRY_STATUS(parse_normalizer(*it, "normalizer", where, config.nfc, spm));
  }
  std::vector<SplitStep> steps;
  bool add_prefix_space = false;
  if (auto it = root.find("pre_tokenizer"); it != root.end() && !it->is_null()) {
    GHOSTD_TRY_STATUS(parse_pre(*it, "pre_tokenizer", where, steps, add_prefix_space, spm));
  }
  const bool byte_fallback = bool_or(model, "byte_fallback", false);
  if (spm.replace || spm.metaspace) {
    if (!steps.empty() || add_prefix_space) {
      return where.at("pre_tokenizer", "byte-level or regex steps together with SentencePiece-style U+2581 spaces");
    }
    // SentencePiece pieces (U+2581 for a space): merges by rank over characters.
    config.sentencepiece = true;
    config.add_space_prefix = spm.prepend || (spm.metaspace && spm.prepend_scheme != "never");
    config.prefix_after_added = spm.prepend || spm.prepend_scheme == "always";
    config.split_words = spm.metaspace && spm.split;
  } else if (spm.prepend || byte_fallback) {
    return where.at(spm.prepend ? "normalizer" : "model.byte_fallback",
                    "SentencePiece-style vocabulary without a Replace(\" \" -> U+2581) normalizer or Metaspace");
  }
  auto pre = PreTokenizer::create(std::move(steps), add_prefix_space);
  if (!pre) return where.at("pre_tokenizer", pre.error().message);
  config.pre = std::move(pre).value();
  auto lookup = [&](const std::string& content) { return token_id(config, content); };
  if (auto it = model.find("unk_token"); it != model.end() && it->is_string()) {
    config.unk_id = lookup(it->get<std::string>());
  }
  if (auto it = root.find("post_processor"); it != root.end()) {
    if (auto bos = template_bos(*it)) {
      config.bos_id = lookup(*bos);
      config.add_bos = config.bos_id >= 0;
    }
  }
  return config;
}

}  // namespace

Result<Tokenizer> Tokenizer::from_hf_json(const std::filesystem::path& path) {
  const Where where{path.string()};
  std::ifstream in(path, std::ios::binary);
  if (!in) return where.at("(file)", "cannot open");
  std::stringstream buffer;
  buffer << in.rdbuf();
  const json root = json::parse(buffer.str(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return where.at("(file)", "not valid JSON");
  Result<TokenizerConfig> config = Error{};
  try {
    config = parse_hf_json(root, where);
  } catch (const json::exception& e) {  // a type mismatch the checks above missed
    return where.at("(file)", std::string("unexpected JSON structure: ") + e.what());
  }
  if (!config) return config.error();
  const auto cfg_path = path.parent_path() / "tokenizer_config.json";
  if (std::error_code ec; std::filesystem::is_regular_file(cfg_path, ec)) {
    const Where cfg_where{cfg_path.string()};
    std::ifstream cfg_in(cfg_path, std::ios::binary);
    if (!cfg_in) return cfg_where.at("(file)", "cannot open");
    std::stringstream cfg_buffer;
    cfg_buffer << cfg_in.rdbuf();
    const json cfg_root = json::parse(cfg_buffer.str(), nullptr, /*allow_exceptions=*/false);
    if (cfg_root.is_discarded()) return cfg_where.at("(file)", "not valid JSON");
    GHOSTD_TRY_STATUS(apply_tokenizer_config(cfg_root, cfg_where, *config));
  }
  return build(std::move(config).value());
}

Result<Tokenizer> Tokenizer::from_vocab(const VocabSpec& spec) {
  const Where where{spec.origin};
  if (spec.tokens.empty()) return where.at("tokenizer.ggml.tokens", "empty");
  if (!spec.token_types.empty() && spec.token_types.size() != spec.tokens.size()) {
    return where.at("tokenizer.ggml.token_type", "has " + std::to_string(spec.token_types.size()) +
                                                     " entries, expected " + std::to_string(spec.tokens.size()));
  }
  if (spec.model != "gpt2" && spec.model != "llama") {
    return where.at("tokenizer.ggml.model", "is \"" + spec.model +
                                                "\", expected \"gpt2\" (byte-level BPE) or \"llama\" (SentencePiece BPE)");
  }
  TokenizerConfig config;
  config.origin = where.file;
  config.pieces = spec.tokens;
  config.sentencepiece = spec.model == "llama";
  if (config.sentencepiece) {
    if (spec.scores.empty()) return where.at("tokenizer.ggml.scores", "missing (SentencePiece vocabularies need one score per token)");
    if (spec.scores.size() != spec.tokens.size()) {
      return where.at("tokenizer.ggml.scores", "has " + std::to_string(spec.scores.size()) + " entries, expected " +
                                                   std::to_string(spec.tokens.size()));
    }
    config.scores = spec.scores;
    // Only normal (1) and user-defined (4) pieces come out of merges; types absent: all do.
    if (!spec.token_types.empty()) {
      config.mergeable.resize(spec.tokens.size());
      for (size_t i = 0; i < spec.token_types.size(); ++i) {
        config.mergeable[i] = spec.token_types[i] == 1 || spec.token_types[i] == 4;
      }
    }
    config.add_space_prefix = spec.add_space_prefix.value_or(true);
  }
  config.unk_id = spec.unk_id;
  for (size_t i = 0; i < spec.token_types.size(); ++i) {
    const int32_t type = spec.token_types[i];
    const auto id = static_cast<int32_t>(i);
    if (type == 2) {
      if (config.unk_id < 0) config.unk_id = id;
    } else if (type == 3 || type == 4) {
      // Control tokens are special; user-defined ones are split out even
      // without parse_special, as HF's non-special added tokens are.
      AddedToken a;
      a.content = config.sentencepiece ? spm_piece_text_for_added(spec.tokens[i]) : spec.tokens[i];
      a.id = id;
      a.special = type == 3;
      if (!a.content.empty()) config.added.push_back(std::move(a));
    }
  }
  if (config.sentencepiece) {
    if (!spec.merges.empty()) {
      return where.at("tokenizer.ggml.merges", "present in a SentencePiece (\"llama\") vocabulary, which merges by score");
    }
    const auto n = static_cast<int32_t>(spec.tokens.size());
    if (spec.bos_id >= n) return where.at("tokenizer.ggml.bos_token_id", "out of range");
    if (spec.eos_id >= n) return where.at("tokenizer.ggml.eos_token_id", "out of range");
    if (spec.unk_id >= n) return where.at("tokenizer.ggml.unknown_token_id", "out of range");
    config.bos_id = spec.bos_id;
    config.eos_id = spec.eos_id;
    config.add_bos = spec.add_bos.value_or(true) && spec.bos_id >= 0;
    return build(std::move(config));
  }
  config.merges.reserve(spec.merges.size());
  for (size_t i = 0; i < spec.merges.size(); ++i) {
    const std::string& s = spec.merges[i];
    const size_t space = s.find(' ', 1);
    if (space == std::string::npos) {
      return where.at("tokenizer.ggml.merges[" + std::to_string(i) + "]", "expected \"a b\", got \"" + s + "\"");
    }
    config.merges.emplace_back(s.substr(0, space), s.substr(space + 1));
  }
  const std::string pre_name = spec.pre.empty() ? "default" : spec.pre;
  auto pre = PreTokenizer::from_gguf_name(pre_name);
  if (!pre) return where.at("tokenizer.ggml.pre", pre.error().message);
  config.pre = std::move(pre).value();
  config.ignore_merges = PreTokenizer::gguf_name_ignores_merges(pre_name);
  const auto n = static_cast<int32_t>(spec.tokens.size());
  if (spec.bos_id >= n) return where.at("tokenizer.ggml.bos_token_id", "out of range");
  if (spec.eos_id >= n) return where.at("tokenizer.ggml.eos_token_id", "out of range");
  if (spec.unk_id >= n) return where.at("tokenizer.ggml.unknown_token_id", "out of range");
  config.bos_id = spec.bos_id;
  config.eos_id = spec.eos_id;
  config.add_bos = spec.add_bos.value_or(false) && spec.bos_id >= 0;
  return build(std::move(config));
}

}  // namespace ghostd::runtime
