// Fuzzes LSP framing and JSON-RPC dispatch through a whole LspServer: the
// input is either raw wire bytes, or (first byte 'J') NUL-separated JSON
// bodies that are framed and sent after an initialize, so the fuzzer reaches
// the handlers. The engine completes jobs synchronously, so runs are
// deterministic.
#include <asio/io_context.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "byte_tokenizer.h"
#include "runtime/engine/engine_api.h"
#include "server/lsp_server.h"

namespace {

using namespace ghostd;

class InlineEngine : public runtime::EngineInterface {
 public:
  runtime::JobId submit(runtime::CompletionJob job, runtime::JobCallbacks cb) override {
    runtime::JobResult r;
    r.tokens = {'x', ' ', '=', ' ', '1', '\n', '}'};
    r.metrics.prompt_tokens = static_cast<int>(job.prompt.size());
    cb.on_tokens(r.tokens);
    cb.on_done(std::move(r));
    return ++next_;
  }
  void cancel(runtime::JobId) override {}

 private:
  runtime::JobId next_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static server::testing::ByteTokenizer tokenizer = server::testing::qwen_tokenizer();
  std::string_view input(reinterpret_cast<const char*>(data), size);
  asio::io_context io;
  InlineEngine engine;
  server::ModelState model;
  (void)model.set_ready("fuzz", server::make_tokenizer_view(tokenizer));
  server::ServerOptions options;
  options.max_message_bytes = 2048;
  server::MemoryTransport transport(io.get_executor(), options.max_message_bytes);
  {
    server::LspServer lsp(transport, engine, model, options, nullptr);
    lsp.start([](int) {});
    if (!input.empty() && input[0] == 'J') {
      transport.push_message(R"({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"capabilities":{}}})");
      input.remove_prefix(1);
      while (!input.empty()) {
        size_t end = input.find('\0');
        transport.push_message(input.substr(0, end));
        io.poll();
        if (end == std::string_view::npos) break;
        input.remove_prefix(end + 1);
      }
    } else {
      // Split the stream at a size picked by the first byte to exercise partial reads.
      size_t chunk = input.empty() ? 1 : 1 + static_cast<unsigned char>(input[0]) % 64;
      for (size_t i = 0; i < input.size(); i += chunk) transport.push_bytes(input.substr(i, chunk));
    }
    io.poll();
  }
  io.poll();
  return 0;
}
