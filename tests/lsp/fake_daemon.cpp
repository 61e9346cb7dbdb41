// The LSP daemon with the fake engine and the byte-level test tokenizer:
// what the transcript tests talk to, so they run without a model.
//   ghostd_lsp_fake [--fake-output TEXT] [--fake-delay-ms N] [--fake-load-ms N] [ghostd flags]
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "byte_tokenizer.h"
#include "fake_engine.h"
#include "runtime/core/log.h"
#include "server/lsp_server.h"

int main(int argc, char** argv) {
  using namespace ghostd::server;
  std::string output = "return 42;\n}";
  int delay_ms = 1;
  int load_ms = 0;
  std::vector<const char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--fake-output" && i + 1 < argc) {
      output = argv[++i];
    } else if (a == "--fake-delay-ms" && i + 1 < argc) {
      delay_ms = std::stoi(argv[++i]);
    } else if (a == "--fake-load-ms" && i + 1 < argc) {
      load_ms = std::stoi(argv[++i]);
    } else {
      rest.push_back(argv[i]);
    }
  }
  auto options = parse_server_options(static_cast<int>(rest.size()), rest.data());
  if (!options.ok()) {
    std::fprintf(stderr, "ghostd_lsp_fake: %s\n", options.error().message.c_str());
    return 2;
  }
  ghostd::runtime::setup_logging(options->log_level);
  auto tokenizer = testing::qwen_tokenizer();
  testing::FakeEngine engine(tokenizer.encode(output, false), std::chrono::milliseconds(delay_ms));
  ModelState model;
  // Without --fake-load-ms the model is ready before the first message, so
  // transcripts do not race the loader; with it, it loads in the background
  // as the real daemon does, reporting progress.
  if (load_ms == 0) (void)model.set_ready("fake", make_tokenizer_view(tokenizer));
  std::thread loader([&] {
    if (load_ms == 0) return;
    for (int p = 0; p < 100 && load_ms > 0; p += 25) {
      model.report_progress(p, "loading " + std::to_string(p) + "%");
      std::this_thread::sleep_for(std::chrono::milliseconds(load_ms / 4));
    }
    (void)model.set_ready("fake", make_tokenizer_view(tokenizer));
  });
  int code = options->listen.empty() ? run_lsp_stdio(*options, engine, model)
                                     : run_lsp_socket(*options, engine, model);
  loader.join();
  return code;
}
