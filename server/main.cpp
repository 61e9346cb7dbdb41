// ghostd: the language-server daemon (default) and its developer commands.
#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string_view>

#include "runtime/core/log.h"
#include "server/cli_commands.h"
#include "server/connect.h"
#include "server/serve.h"
#include "server/version.h"

namespace {

void print_help() {
  std::printf(
      "ghostd %s: AI code completions over the Language Server Protocol\n\n"
      "usage:\n"
      "  ghostd [serve] [options]          run the language server (stdio; see docs/configuration.md)\n"
      "  ghostd generate --model PATH --prompt TEXT [options]   generate text, print tokens/s\n"
      "  ghostd tokenize --model PATH [--decode] [--no-special] text to ids (or back) on stdin\n"
      "  ghostd connect tls://HOST:PORT [options]  stdio bridge to a shared `ghostd serve --listen`\n"
      "  ghostd --version | --help\n\n"
      "Each command answers --help with its options.\n"
      "--model takes a Hugging Face directory or a GGUF file.\n"
      "Environment: GHOSTD_LOG=trace|debug|info|warn|error (logs go to stderr).\n",
      ghostd::server::version());
}

}  // namespace

int main(int argc, char** argv) {
  const char* level = std::getenv("GHOSTD_LOG");
  ghostd::runtime::setup_logging(level ? level : "info");
  std::string_view cmd = argc > 1 ? argv[1] : "serve";
  // `ghostd --model M ...` is `ghostd serve --model M ...`.
  if (cmd.starts_with("--") && cmd != "--help" && cmd != "--version") {
    return ghostd::server::run_serve(std::span<char*>(argv + 1, argv + argc), argv[0]);
  }
  std::span<char*> rest(argv + std::min(argc, 2), argv + argc);
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    print_help();
    return 0;
  }
  if (cmd == "--version" || cmd == "version") {
    std::fputs(ghostd::server::build_description().c_str(), stdout);
    return 0;
  }
  if (cmd == "serve") return ghostd::server::run_serve(rest, argv[0]);
  if (cmd == "generate") return ghostd::server::run_generate(rest);
  if (cmd == "tokenize") return ghostd::server::run_tokenize(rest);
  if (cmd == "connect") return ghostd::server::run_connect(rest);
  std::fprintf(stderr, "ghostd: unknown command '%s' (try --help)\n", argv[1]);
  return 2;
}
