// Drives a whole LspServer through the in-memory transport on the test's
// thread, with the fake engine and a byte-level tokenizer.
#pragma once

#include <asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "byte_tokenizer.h"
#include "fake_engine.h"
#include "server/lsp_server.h"

namespace ghostd::server::testing {

// Thread-safety: not thread-safe; one test thread.
class LspHarness {
 public:
  explicit LspHarness(std::string engine_output = "return 42;\n}",
                      std::chrono::milliseconds per_token = std::chrono::milliseconds(1), bool model_ready = true,
                      ServerOptions options = {}, MetricsLog* metrics = nullptr, SessionContext context = {})
      : tokenizer_(qwen_tokenizer()),
        engine_(tokenizer_.encode(engine_output, false), per_token),
        transport_(io_.get_executor(), options.max_message_bytes) {
    if (model_ready) {
      auto s = model_.set_ready("test", make_tokenizer_view(tokenizer_));
      (void)s;
    }
    server_ = std::make_unique<LspServer>(transport_, engine_, model_, options, metrics, std::move(context));
    server_->start([this](int code) { exit_code_ = code; });
  }

  void send(const nlohmann::json& msg) { transport_.push_message(msg.dump()); }
  void send_raw(const std::string& bytes) { transport_.push_bytes(bytes); }
  void request(int id, const std::string& method, const nlohmann::json& params) {
    send({{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", params}});
  }
  void notify(const std::string& method, const nlohmann::json& params) {
    send({{"jsonrpc", "2.0"}, {"method", method}, {"params", params}});
  }

  // Runs the event loop until `done` or the timeout; returns `done()`.
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (!done() && std::chrono::steady_clock::now() < end) {
      io_.restart();
      io_.run_for(std::chrono::milliseconds(1));
    }
    return done();
  }
  void run_for(std::chrono::milliseconds d) {
    auto end = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < end) {
      io_.restart();
      io_.run_for(std::chrono::milliseconds(1));
    }
  }

  // All messages the server sent so far, parsed.
  std::vector<nlohmann::json> sent() {
    std::vector<nlohmann::json> out;
    for (auto& s : transport_.sent()) out.push_back(nlohmann::json::parse(s));
    return out;
  }
  // The reply to request `id`, waiting for it.
  std::optional<nlohmann::json> reply(const nlohmann::json& id,
                                      std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    std::optional<nlohmann::json> found;
    run_until(
        [&] {
          for (auto& s : transport_.sent()) {
            auto j = nlohmann::json::parse(s);
            if (j.contains("id") && j["id"] == id && !j.contains("method")) {
              found = j;
              return true;
            }
          }
          return false;
        },
        timeout);
    return found;
  }
  int count_replies(const nlohmann::json& id) {
    int n = 0;
    for (auto& j : sent()) n += (j.contains("id") && j["id"] == id && !j.contains("method")) ? 1 : 0;
    return n;
  }

  void initialize(const nlohmann::json& caps = nlohmann::json::object(),
                  const nlohmann::json& init_options = nullptr) {
    request(0, "initialize", {{"processId", nullptr}, {"capabilities", caps}, {"initializationOptions", init_options}});
    auto r = reply(0);
    notify("initialized", nlohmann::json::object());
    run_for(std::chrono::milliseconds(1));
    (void)r;
  }
  void open(const std::string& uri, const std::string& text, int version = 1) {
    notify("textDocument/didOpen",
           {{"textDocument", {{"uri", uri}, {"languageId", "cpp"}, {"version", version}, {"text", text}}}});
  }
  static nlohmann::json pos_params(const std::string& uri, int line, int ch) {
    return {{"textDocument", {{"uri", uri}}}, {"position", {{"line", line}, {"character", ch}}}};
  }

  ByteTokenizer& tokenizer() { return tokenizer_; }
  FakeEngine& engine() { return engine_; }
  ModelState& model() { return model_; }
  LspServer& server() { return *server_; }
  MemoryTransport& transport() { return transport_; }
  std::optional<int> exit_code() const { return exit_code_; }

 private:
  asio::io_context io_;
  ByteTokenizer tokenizer_;
  FakeEngine engine_;
  ModelState model_;
  MemoryTransport transport_;
  std::unique_ptr<LspServer> server_;
  std::optional<int> exit_code_;
};

}  // namespace ghostd::server::testing
