// UTF-8 helpers shared by dispatch and the document store.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ghostd::server {

// Length of the UTF-8 sequence that starts with `lead` (1 for stray bytes).
inline size_t utf8_sequence_length(unsigned char lead) {
  return lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3 : (lead >> 3) == 0x1E ? 4 : 1;
}

// True for bytes that continue a sequence (10xxxxxx).
inline bool utf8_is_continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

// Replaces each invalid byte (bad lead, truncated sequence, overlong form,
// surrogate, > U+10FFFF) by U+FFFD. Returns the input unchanged when valid.
std::string sanitize_utf8(std::string_view s);
bool is_valid_utf8(std::string_view s);

}  // namespace ghostd::server
