#include "server/postprocess.h"

#include <algorithm>

namespace ghostd::server {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// Leading indentation width (a tab counts as 4 columns).
int indent_of(std::string_view line) {
  int w = 0;
  for (char c : line) {
    if (c == ' ') {
      ++w;
    } else if (c == '\t') {
      w += 4;
    } else {
      break;
    }
  }
  return w;
}

std::vector<std::string_view> split_lines(std::string_view s) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  for (;;) {
    size_t nl = s.find('\n', start);
    if (nl == std::string_view::npos) {
      lines.push_back(s.substr(start));
      return lines;
    }
    lines.push_back(s.substr(start, nl - start));
    start = nl + 1;
  }
}

// Brackets opened in `s` and not closed there.
int unclosed_openers(std::string_view s) {
  int depth = 0;
  for (char c : s) {
    if (c == '(' || c == '[' || c == '{') ++depth;
    if ((c == ')' || c == ']' || c == '}') && depth > 0) --depth;
  }
  return depth;
}

// Byte offset of the first closing bracket that matches nothing opened in
// the completion nor left open on the cursor's line; npos when none.
size_t unbalanced_close(std::string_view text, int open_before) {
  int depth = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '(' || c == '[' || c == '{') {
      ++depth;
    } else if (c == ')' || c == ']' || c == '}') {
      if (depth > 0) {
        --depth;
      } else if (open_before > 0) {
        --open_before;
      } else {
        return i;
      }
    }
  }
  return std::string_view::npos;
}

}  // namespace

std::string postprocess_completion(std::string_view text, const PostprocessContext& ctx,
                                   const PostprocessOptions& options) {
  for (const auto& stop : options.stop_strings) {
    if (stop.empty()) continue;
    size_t at = text.find(stop);
    if (at != std::string_view::npos) text = text.substr(0, at);
  }

  // Line rules: block end by indentation, a line that repeats the suffix, max lines.
  std::string_view rest_of_line = ctx.suffix.substr(0, std::min(ctx.suffix.find('\n'), ctx.suffix.size()));
  std::string_view next_suffix_line;
  if (size_t nl = ctx.suffix.find('\n'); nl != std::string_view::npos) {
    for (auto line : split_lines(ctx.suffix.substr(nl + 1))) {
      if (!trim(line).empty()) {
        next_suffix_line = trim(line);
        break;
      }
    }
  }
  const int base_indent = indent_of(ctx.line_prefix);
  auto lines = split_lines(text);
  size_t keep = lines.size();
  for (size_t i = 1; i < lines.size(); ++i) {
    std::string_view t = trim(lines[i]);
    if (t.empty()) continue;
    if (options.stop_at_block_end && indent_of(lines[i]) < base_indent) {
      keep = i;
      break;
    }
    if (!next_suffix_line.empty() && t == next_suffix_line) {
      keep = i;
      break;
    }
  }
  keep = std::min(keep, static_cast<size_t>(std::max(1, options.max_lines)));
  size_t cut = 0;
  for (size_t i = 0; i < keep; ++i) cut += lines[i].size() + (i + 1 < lines.size() ? 1 : 0);
  text = text.substr(0, std::min(cut, text.size()));

  if (options.balance_brackets) {
    size_t at = unbalanced_close(text, unclosed_openers(ctx.line_prefix));
    if (at != std::string_view::npos) text = text.substr(0, at);
  }

  // Trailing whitespace never helps ghost text.
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);

  // Drop the overlap with the rest of the cursor's line: "foo(|)" + "x)" -> "x".
  std::string_view rest = trim(rest_of_line);
  for (size_t k = std::min(rest.size(), text.size()); k > 0; --k) {
    if (text.ends_with(rest.substr(0, k))) {
      text.remove_suffix(k);
      break;
    }
  }
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  if (trim(text).empty()) return {};
  return std::string(text);
}

}  // namespace ghostd::server
