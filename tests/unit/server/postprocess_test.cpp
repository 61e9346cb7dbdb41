#include "server/postprocess.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace ghostd::server;

TEST_CASE("post-processing rules") {
  struct Case {
    const char* name;
    std::string line_prefix;
    std::string suffix;
    std::string raw;
    std::string expected;
    int max_lines = 16;
  };
  const std::vector<Case> cases = {
      {"plain", "x = ", "\n", "42", "42"},
      {"whitespace only", "x = ", "\n", "  \n\t", ""},
      {"empty", "x = ", "", "", ""},
      {"stop string", "x = ", "", "1<|endoftext|>junk", "1"},
      {"block end by indentation", "    y = ", "\n",
       "compute()\n    z = 2\ndef other():\n    pass", "compute()\n    z = 2"},
      {"blank lines do not end the block", "    ", "", "a = 1\n\n    b = 2\nc", "a = 1\n\n    b = 2"},
      {"max lines", "", "", "a\nb\nc\nd", "a\nb", 2},
      {"unbalanced closer cut", "    call(x", "", "), y)\n", "), y"},
      {"closer of the open call kept, suffix overlap dropped", "foo(", ")\n", "a, b)", "a, b"},
      {"closing brace of enclosing block cut", "  if (x) { y(); ", "\n", "z(); } }", "z(); }"},
      {"repeat of the next suffix line dropped", "def f():\n", "\n    return 1\n",
       "x = 2\nreturn 1\nmore", "x = 2"},
      {"overlap with rest of line", "print(", "\"hi\")\n", "\"hi\")", ""},
      {"trailing whitespace trimmed", "a", "", "bc   \n\n", "bc"},
  };
  for (const auto& c : cases) {
    PostprocessOptions opts;
    opts.max_lines = c.max_lines;
    opts.stop_strings = {"<|endoftext|>"};
    INFO(c.name);
    CHECK(postprocess_completion(c.raw, {c.line_prefix, c.suffix}, opts) == c.expected);
  }
}
