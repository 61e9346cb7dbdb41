// The prompt pool alone (round-robin between sessions, shutdown) and a whole
// LSP session building its prompts there.
#include "server/prompt_pool.h"

#include <doctest/doctest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "lsp_harness.h"

using namespace ghostd::server;
using ghostd::server::testing::LspHarness;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

const char* kUri = "file:///w/main.cpp";
const char* kText = "int f() {\n  \n}\n";

// Holds the pool's one thread inside a task until release().
struct Gate {
  std::promise<void> entered, open;
  std::shared_future<void> opened{open.get_future().share()};
  void block(PromptPool& pool, uint64_t session) {
    pool.submit(session, [this] {
      entered.set_value();
      opened.wait();
    });
    entered.get_future().wait();
  }
  void release() { open.set_value(); }
};

}  // namespace

TEST_CASE("PromptPool: sessions take turns; one session's tasks stay in order") {
  PromptPool pool(1);
  Gate gate;
  gate.block(pool, 0);
  std::mutex mu;
  std::vector<std::string> order;
  auto task = [&](std::string name) {
    return [&, name] {
      std::lock_guard lock(mu);
      order.push_back(name);
    };
  };
  // Session 1 floods first; session 2's one task must not wait behind it all.
  for (int i = 0; i < 4; ++i) pool.submit(1, task("a" + std::to_string(i)));
  pool.submit(2, task("b0"));
  pool.submit(3, task("c0"));
  pool.submit(2, task("b1"));
  CHECK(pool.queued() == 7);
  gate.release();
  for (int i = 0; i < 500 && pool.queued() > 0; ++i) std::this_thread::sleep_for(1ms);
  std::promise<void> last;
  pool.submit(9, [&] { last.set_value(); });
  last.get_future().wait();
  std::lock_guard lock(mu);
  CHECK(order == std::vector<std::string>{"a0", "b0", "c0", "a1", "b1", "a2", "a3"});
}

TEST_CASE("PromptPool: destruction waits for the running task and drops the queued ones") {
  std::atomic<int> ran{0};
  Gate gate;
  std::thread releaser;
  {
    PromptPool pool(1);
    gate.block(pool, 5);
    for (int i = 0; i < 10; ++i) pool.submit(5, [&] { ++ran; });
    // Opens the gate once the destructor (below) has dropped the queue; the
    // pool's members live until its threads are joined, which needs the gate.
    releaser = std::thread([&] {
      while (pool.queued() != 0) std::this_thread::sleep_for(1ms);
      gate.release();
    });
  }
  releaser.join();
  CHECK(ran.load() == 0);
}

TEST_CASE("prompts built on the pool: same prompt, typed-through hint, one reply per request") {
  // The pool reads the harness's tokenizer: it is stopped (reset) before the
  // harness goes, as the daemon stops it before the model goes.
  auto pool = std::make_unique<PromptPool>(2);
  LspHarness h("return 42;\n}", 1ms, true, {}, nullptr, SessionContext{.id = 7, .prompts = pool.get()});
  h.initialize();
  h.open(kUri, kText);
  h.request(10, "textDocument/inlineCompletion", LspHarness::pos_params(kUri, 1, 2));
  auto r = h.reply(10);
  REQUIRE(r.has_value());
  REQUIRE((*r)["result"]["items"].size() == 1);
  CHECK((*r)["result"]["items"][0]["insertText"] == "return 42;");
  CHECK(h.tokenizer().decode(h.engine().last_prompt()) ==
        "<|fim_prefix|>int f() {\n <|fim_suffix|>\n}\n<|fim_middle|>");
  // The shown completion's rest still becomes the job's drafts.
  h.notify("textDocument/didChange", {{"textDocument", {{"uri", kUri}, {"version", 2}}},
                                      {"contentChanges", {{{"text", "int f() {\n  ret\n}\n"}}}}});
  h.request(11, "textDocument/inlineCompletion", LspHarness::pos_params(kUri, 1, 5));
  REQUIRE(h.reply(11).has_value());
  CHECK(h.tokenizer().decode(h.engine().last_hint()).starts_with("turn 42;"));

  // A burst: every request answered exactly once, whatever order the two
  // threads finish its prompts in.
  std::string burst;
  for (int i = 0; i < 500; ++i) {
    json msg = {{"jsonrpc", "2.0"}, {"id", 1000 + i}, {"method", "textDocument/inlineCompletion"},
                {"params", LspHarness::pos_params(kUri, 1, 2)}};
    burst += encode_frame(msg.dump());
  }
  h.send_raw(burst);
  CHECK(h.run_until([&] {
    for (int i = 0; i < 500; ++i)
      if (h.count_replies(1000 + i) == 0) return false;
    return true;
  }, 20s));
  for (int i = 0; i < 500; ++i) CHECK(h.count_replies(1000 + i) == 1);
  pool.reset();
}

TEST_CASE("prompts built on the pool: a request cancelled or past its deadline before its prompt is built") {
  auto pool = std::make_unique<PromptPool>(1);
  ServerOptions opts;
  opts.deadline_ms = 100;
  LspHarness h("abc", 1ms, true, opts, nullptr, SessionContext{.id = 3, .prompts = pool.get()});
  h.initialize();
  h.open(kUri, kText);
  Gate gate;
  gate.block(*pool, 3);  // the session's prompts queue behind this
  const int before = h.engine().submitted();
  h.request(20, "textDocument/inlineCompletion", LspHarness::pos_params(kUri, 1, 2));
  h.run_for(5ms);
  h.notify("$/cancelRequest", {{"id", 20}});
  auto cancelled = h.reply(20);
  REQUIRE(cancelled.has_value());
  CHECK((*cancelled)["error"]["code"] == -32800);
  h.request(21, "textDocument/inlineCompletion", LspHarness::pos_params(kUri, 1, 2));
  auto expired = h.reply(21, 2s);  // the deadline passes while the pool is held
  REQUIRE(expired.has_value());
  CHECK(expired->contains("result"));
  CHECK(h.engine().submitted() == before);
  gate.release();
  h.run_for(50ms);
  // The prompts built afterwards are dropped: no job for an answered request.
  CHECK(h.engine().submitted() == before);
  CHECK(h.count_replies(20) == 1);
  CHECK(h.count_replies(21) == 1);
  h.request(22, "textDocument/inlineCompletion", LspHarness::pos_params(kUri, 1, 2));
  auto r = h.reply(22);
  REQUIRE(r.has_value());
  CHECK(h.engine().submitted() == before + 1);
  pool.reset();
}
