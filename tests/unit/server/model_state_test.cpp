#include "server/model_state.h"

#include <doctest/doctest.h>

#include <vector>

#include "byte_tokenizer.h"

using namespace ghostd::server;

TEST_CASE("model state: the first model request is loaded; later different ones get a warning") {
  ModelState state;
  std::vector<std::string> loads;
  // A request before the loader is ready is kept and handed over.
  CHECK_FALSE(state.request_model("").has_value());
  state.set_load_request_handler([&](const std::string& path) { loads.push_back(path); });
  CHECK(loads == std::vector<std::string>{""});
  CHECK_FALSE(state.request_model("").has_value());
  auto warning = state.request_model("/models/other");
  REQUIRE(warning.has_value());
  CHECK(warning->find("/models/other not loaded") != std::string::npos);
  CHECK(loads.size() == 1);

  ModelState named;
  std::vector<std::string> named_loads;
  named.set_load_request_handler([&](const std::string& path) { named_loads.push_back(path); });
  CHECK_FALSE(named.request_model("/m/a").has_value());
  CHECK_FALSE(named.request_model("/m/a").has_value());
  CHECK_FALSE(named.request_model("").has_value());
  CHECK(named.request_model("/m/b").has_value());
  CHECK(named_loads == std::vector<std::string>{"/m/a"});
}

TEST_CASE("model state: progress, then ready; no FIM tokens means plain prompts and a warning") {
  ModelState state;
  std::vector<ModelSnapshot> seen;
  state.subscribe([&](const ModelSnapshot& s) { seen.push_back(s); });
  state.report_progress(40, "weights");
  testing::ByteTokenizer tok({"<|endoftext|>"});
  REQUIRE(state.set_ready("m", make_tokenizer_view(tok)).ok());
  state.report_progress(50, "ignored once ready");
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].phase == ModelSnapshot::Phase::kLoading);
  CHECK(seen[0].percent == 40);
  CHECK(seen[1].phase == ModelSnapshot::Phase::kReady);
  REQUIRE(seen[1].info);
  CHECK(seen[1].info->fim.family == FimFamily::kPlain);
  CHECK(seen[1].info->warning.find("left to right") != std::string::npos);

  ModelState qwen;
  auto qtok = testing::qwen_tokenizer();
  REQUIRE(qwen.set_ready("q", make_tokenizer_view(qtok)).ok());
  CHECK(qwen.snapshot().info->fim.family == FimFamily::kQwenCoder);
  CHECK(qwen.snapshot().info->warning.empty());

  ModelState failed;
  failed.set_failed("model.safetensors: missing");
  CHECK(failed.snapshot().phase == ModelSnapshot::Phase::kFailed);
}
