// Turns raw generated text into what the editor shows: cut at stop strings,
// at the end of the block (indentation), at max lines, at an unbalanced
// closing bracket; drop text that repeats the suffix; empty means no item.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ghostd::server {

struct PostprocessOptions {
  int max_lines = 16;
  bool stop_at_block_end = true;
  bool balance_brackets = true;
  std::vector<std::string> stop_strings;  // e.g. "\n\n\n", textual end markers
};

struct PostprocessContext {
  std::string_view line_prefix;  // the cursor's line up to the cursor
  std::string_view suffix;       // text after the cursor
};

// Returns the text to insert; empty when nothing useful is left.
std::string postprocess_completion(std::string_view text, const PostprocessContext& ctx,
                                   const PostprocessOptions& options);

}  // namespace ghostd::server
