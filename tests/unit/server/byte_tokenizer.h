// Test stand-in for the runtime tokenizer: one token per byte, special tokens
// numbered from 256 in the order given; `bos`, when given, is one of them and
// starts every sequence (the tokenizer's add_bos).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/prompt.h"

namespace ghostd::server::testing {

class ByteTokenizer {
 public:
  explicit ByteTokenizer(std::vector<std::string> specials, std::string bos = "")
      : specials_(std::move(specials)), bos_(std::move(bos)) {}

  std::vector<int32_t> encode(std::string_view text, bool parse_special = true) const {
    std::vector<int32_t> out;
    for (size_t i = 0; i < text.size();) {
      bool matched = false;
      if (parse_special) {
        for (size_t k = 0; k < specials_.size(); ++k) {
          if (text.substr(i).starts_with(specials_[k])) {
            out.push_back(static_cast<int32_t>(256 + k));
            i += specials_[k].size();
            matched = true;
            break;
          }
        }
      }
      if (!matched) out.push_back(static_cast<unsigned char>(text[i++]));
    }
    return out;
  }
  std::optional<int32_t> find_token(std::string_view t) const {
    for (size_t k = 0; k < specials_.size(); ++k) {
      if (specials_[k] == t) return static_cast<int32_t>(256 + k);
    }
    return std::nullopt;
  }
  int32_t bos_id() const { return bos_.empty() ? -1 : find_token(bos_).value_or(-1); }
  bool add_bos_default() const { return !bos_.empty(); }
  std::string decode(const std::vector<int32_t>& ids) const {
    std::string out;
    for (int32_t id : ids) {
      if (id < 256) {
        out.push_back(static_cast<char>(id));
      } else if (static_cast<size_t>(id - 256) < specials_.size()) {
        out += specials_[static_cast<size_t>(id - 256)];
      }
    }
    return out;
  }

 private:
  std::vector<std::string> specials_;
  std::string bos_;
};

inline ByteTokenizer qwen_tokenizer() {
  return ByteTokenizer({"<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
                        "<|repo_name|>", "<|file_sep|>"});
}

}  // namespace ghostd::server::testing
