// The `ghostd generate` and `ghostd tokenize` subcommands: for people
// debugging prompts and models, and for conformance checks.
#pragma once

#include <span>
#include <string>

namespace ghostd::server {

// argv excludes the program and subcommand names. Return the exit code.
int run_generate(std::span<char*> args);
int run_tokenize(std::span<char*> args);

}  // namespace ghostd::server
