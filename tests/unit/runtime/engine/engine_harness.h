// The engine tests' fixture: a random-weight model written by the test,
// engines over it on the backend GHOSTD_TEST_DEVICE names, and collectors of
// what each job saw through its callbacks.
#pragma once

#include "runtime/engine/engine.h"
#include <doctest/doctest.h>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>
#include "runtime/model/model_loader.h"
#include "runtime/parallel/device_group.h"
#include "tests/unit/runtime/model_file_writers.h"
#include "tests/unit/skip.h"

namespace ghostd::runtime::engine_testing {

using namespace std::chrono_literals;

inline constexpr int kVocab = 300;

// Deterministic uniform weights with std `stddev` (splitmix64 stream).
inline test::Bytes random_f32(size_t n, float stddev, uint64_t& state, float mean = 0.0f) {
  std::vector<float> v(n);
  const float a = stddev * std::sqrt(3.0f);
  for (float& x : v) {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    const float u = static_cast<float>(z >> 40) / static_cast<float>(1ull << 24);  // [0, 1)
    x = mean + a * (2.0f * u - 1.0f);
  }
  return test::to_bytes(v);
}

// The architecture of the test model: GHOSTD_TEST_ARCH (qwen2 by default;
// starcoder2 with a 24-token sliding window, or gemma), so the invariants
// also hold for LayerNorm/GELU/window and (1 + w)/GeGLU/scaled-embedding
// layers (ctest unit.runtime.engine.engine_starcoder2 / engine_gemma).
inline std::string test_arch() {
  const char* a = std::getenv("GHOSTD_TEST_ARCH");
  return a && *a ? a : "qwen2";
}

// Random weights of one shape: the target is the default; drafts vary the
// seed (a different model: low acceptance), the layer count or the vocabulary.
struct ModelShape {
  uint64_t seed = 1;
  int layers = 2;
  int vocab = kVocab;
};

// A model (hidden 64, 4 heads, 2 KV heads, tied embeddings) of test_arch()
// in HF layout.
inline void write_model(const std::filesystem::path& dir, ModelShape shape = {}) {
  const int H = 64, I = 128, L = shape.layers, QD = 64, KD = 32;
  const std::string arch = test_arch();
  const bool starcoder2 = arch == "starcoder2", gemma = arch == "gemma";
  REQUIRE_MESSAGE((starcoder2 || gemma || arch == "qwen2"), "GHOSTD_TEST_ARCH: qwen2, starcoder2 or gemma");
  const std::string dims =
      R"("hidden_size":64,"num_hidden_layers":)" + std::to_string(L) +
      R"(,"num_attention_heads":4,"num_key_value_heads":2,"intermediate_size":128,"vocab_size":)" +
      std::to_string(shape.vocab) +
      R"(,"max_position_embeddings":4096,"rope_theta":10000.0,"tie_word_embeddings":true)";
  test::write_text(dir / "config.json",
                   starcoder2 ? R"({"architectures":["Starcoder2ForCausalLM"],"norm_epsilon":1e-5,"use_bias":true,)"
                                R"("sliding_window":24,"hidden_act":"gelu_pytorch_tanh",)" + dims + "}"
                   : gemma    ? R"({"architectures":["GemmaForCausalLM"],"rms_norm_eps":1e-6,"head_dim":16,)" + dims + "}"
                              : R"({"architectures":["Qwen2ForCausalLM"],"rms_norm_eps":1e-6,)" + dims + "}");
  uint64_t s = shape.seed;
  test::SafetensorsWriter w;
  auto mat = [&](const std::string& name, int64_t rows, int64_t cols, float stddev) {
    w.add(name, "F32", {rows, cols}, random_f32(static_cast<size_t>(rows * cols), stddev, s));
  };
  auto vec = [&](const std::string& name, int64_t n, float stddev, float mean) {
    w.add(name, "F32", {n}, random_f32(static_cast<size_t>(n), stddev, s, mean));
  };
  // Gemma stores w of x * (1 + w); StarCoder2's norms have a bias.
  auto norm = [&](const std::string& name) {
    vec(name + ".weight", H, 0.1f, gemma ? 0.0f : 1.0f);
    if (starcoder2) vec(name + ".bias", H, 0.1f, 0.0f);
  };
  mat("model.embed_tokens.weight", shape.vocab, H, (gemma ? 0.25f : 1.0f) / std::sqrt(float(H)));
  norm("model.norm");
  for (int l = 0; l < L; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    norm(p + "input_layernorm");
    norm(p + "post_attention_layernorm");
    mat(p + "self_attn.q_proj.weight", QD, H, 1.0f / std::sqrt(float(H)));
    mat(p + "self_attn.k_proj.weight", KD, H, 1.0f / std::sqrt(float(H)));
    mat(p + "self_attn.v_proj.weight", KD, H, 1.0f / std::sqrt(float(H)));
    if (!gemma) {
      vec(p + "self_attn.q_proj.bias", QD, 0.1f, 0.0f);
      vec(p + "self_attn.k_proj.bias", KD, 0.1f, 0.0f);
      vec(p + "self_attn.v_proj.bias", KD, 0.1f, 0.0f);
    }
    mat(p + "self_attn.o_proj.weight", H, QD, 1.0f / std::sqrt(float(QD)));
    if (starcoder2) {
      vec(p + "self_attn.o_proj.bias", H, 0.1f, 0.0f);
      mat(p + "mlp.c_fc.weight", I, H, 1.0f / std::sqrt(float(H)));
      vec(p + "mlp.c_fc.bias", I, 0.1f, 0.0f);
      mat(p + "mlp.c_proj.weight", H, I, 1.0f / std::sqrt(float(I)));
      vec(p + "mlp.c_proj.bias", H, 0.1f, 0.0f);
    } else {
      mat(p + "mlp.gate_proj.weight", I, H, 1.0f / std::sqrt(float(H)));
      mat(p + "mlp.up_proj.weight", I, H, 1.0f / std::sqrt(float(H)));
      mat(p + "mlp.down_proj.weight", H, I, 1.0f / std::sqrt(float(I)));
    }
  }
  w.write(dir / "model.safetensors");
}

// The backend the cases run on: GHOSTD_TEST_DEVICE (cpu by default).
inline std::string test_device() {
  const char* d = std::getenv("GHOSTD_TEST_DEVICE");
  return d && *d ? d : "cpu";
}

// GHOSTD_TEST_TP=N: the model runs tensor parallel over N ranks of the
// test device (CPU ranks with host collectives, or GPUs with NCCL), with
// the sharded path (collectives) even for N = 1; 0 or unset: one plain rank.
inline int test_tensor_parallel() {
  const char* t = std::getenv("GHOSTD_TEST_TP");
  return t && *t ? std::atoi(t) : 0;
}

struct TestModel {
  test::TempDir dir;
  std::unique_ptr<Backend> own_backend;
  DeviceGroup group;         // with GHOSTD_TEST_TP
  Backend* backend = nullptr;  // rank 0's (drafts load here)
  LoadedModel loaded;
  bool ready = false;  // false: the device is not here (skipped)
  TestModel() {
    const std::string device = test_device();
    const int tp = test_tensor_parallel();
    if (tp > 0) {
      std::vector<std::string> devices;
      for (int r = 0; r < tp; ++r) devices.push_back(device == "cpu" ? "cpu" : "cuda:" + std::to_string(r));
      auto g = make_device_group(devices, {.cpu_threads = tp, .host = {}, .always_communicate = true});
      if (!g.ok()) {
        if (device != "cpu") {
          ghostd::test::skip(device + " x" + std::to_string(tp) + ": " + g.error().message);
          return;
        }
        FAIL(g.error().message);
      }
      group = std::move(*g);
      backend = group.backends[0].get();
    } else if (device == "cpu") {
      own_backend = make_cpu_backend({.threads = 1});
      backend = own_backend.get();
    } else {
      auto b = make_backend(device);
      if (!b.ok()) {
        ghostd::test::skip(device + ": " + b.error().message);
        return;
      }
      own_backend = std::move(*b);
      backend = own_backend.get();
    }
    ready = true;
    write_model(dir.path());
    auto m = tp > 0 ? load_model(dir.path(), group.backend_list(), group.comm_list(), /*need_tokenizer=*/false)
                    : load_model(dir.path(), *backend, /*need_tokenizer=*/false);
    REQUIRE_MESSAGE(m.ok(), (m.ok() ? "" : m.error().message));
    loaded = std::move(*m);
  }
  Model& model() { return *loaded.model; }
  // A second model on the same backend (a draft), loaded once per shape.
  Model& draft(ModelShape shape) {
    const std::string key = std::to_string(shape.seed) + "/" + std::to_string(shape.layers) + "/" +
                            std::to_string(shape.vocab);
    auto it = drafts.find(key);
    if (it == drafts.end()) {
      const auto sub = dir.path() / ("draft-" + std::to_string(drafts.size()));
      std::filesystem::create_directories(sub);
      write_model(sub, shape);
      auto m = load_model(sub, *backend, /*need_tokenizer=*/false);
      REQUIRE_MESSAGE(m.ok(), (m.ok() ? "" : m.error().message));
      it = drafts.emplace(key, std::move(*m)).first;
    }
    return *it->second.model;
  }
  std::map<std::string, LoadedModel> drafts;
  // KV bytes of one block on each rank (the engine's budget is per device).
  size_t block_bytes(int block_size = 16) const { return loaded.model->kv_bytes_per_block(block_size); }
};

inline EngineOptions small_options(int num_blocks = 256) {
  EngineOptions o;
  o.kv_memory_bytes = 0;  // set by make_engine
  o.block_size = 16;
  o.scheduler.max_batch_tokens = 48;  // forces chunked prefill mixed with decodes
  o.speculate = false;
  o.validate_each_step = true;
  // GHOSTD_TEST_STEP_GRAPHS=1: decode steps captured and replayed (the CPU
  // emulates capture), ctest unit.runtime.engine.engine_graphs.
  if (const char* g = std::getenv("GHOSTD_TEST_STEP_GRAPHS"); g && *g) o.step_graphs = std::atoi(g);
  (void)num_blocks;
  return o;
}

inline std::unique_ptr<Engine> make_engine(TestModel& tm, EngineOptions o, int num_blocks = 256) {
  size_t per_block = tm.block_bytes(o.block_size);
  if (o.draft_model != nullptr) per_block += o.draft_model->kv_bytes_per_block(o.block_size);
  o.kv_memory_bytes = static_cast<size_t>(num_blocks) * per_block;
  auto e = Engine::create(tm.model(), o);
  REQUIRE_MESSAGE(e.ok(), (e.ok() ? "" : e.error().message));
  REQUIRE(e.value()->num_kv_blocks() == num_blocks);
  return std::move(*e);
}

// What one job saw through its callbacks.
struct Outcome {
  std::vector<int32_t> streamed;
  JobResult result;
  int done_calls = 0;
};

// Collects outcomes of many jobs; waits for their on_done.
class Collector {
 public:
  JobCallbacks callbacks(int stop_after = -1) {
    auto o = std::make_shared<Outcome>();
    {
      std::lock_guard lock(mu_);
      outcomes_.push_back(o);
    }
    JobCallbacks cb;
    cb.on_tokens = [this, o, stop_after](const std::vector<int32_t>& t) {
      std::lock_guard lock(mu_);
      o->streamed.insert(o->streamed.end(), t.begin(), t.end());
      return stop_after < 0 || static_cast<int>(o->streamed.size()) < stop_after;
    };
    cb.on_done = [this, o](JobResult r) {
      std::lock_guard lock(mu_);
      o->result = std::move(r);
      ++o->done_calls;
      ++done_;
      cv_.notify_all();
    };
    return cb;
  }
  bool wait_all(std::chrono::milliseconds timeout = 20s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return done_ >= static_cast<int>(outcomes_.size()); });
  }
  const Outcome& at(size_t i) {
    std::lock_guard lock(mu_);
    return *outcomes_.at(i);
  }
  size_t size() {
    std::lock_guard lock(mu_);
    return outcomes_.size();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<Outcome>> outcomes_;
  int done_ = 0;
};

inline std::vector<int32_t> random_prompt(std::mt19937& rng, int n) {
  std::uniform_int_distribution<int32_t> tok(0, kVocab - 1);
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (auto& t : p) t = tok(rng);
  return p;
}

inline CompletionJob greedy_job(std::vector<int32_t> prompt, int max_new, std::string doc = "doc") {
  CompletionJob j;
  j.prompt = std::move(prompt);
  j.document_id = std::move(doc);
  j.stop.max_new_tokens = max_new;
  return j;
}

// Runs one job alone on `engine` and returns its outcome.
inline Outcome run_alone(Engine& engine, CompletionJob job) {
  Collector c;
  engine.submit(std::move(job), c.callbacks());
  REQUIRE(c.wait_all());
  return c.at(0);
}

inline void check_clean_shutdown(Engine& engine) {
  CHECK(engine.stats().accounting_error == "");
  Status s = engine.shutdown();
  CHECK_MESSAGE(s.ok(), s.message());
  CHECK(engine.stats().free_blocks == engine.num_kv_blocks());
}

}  // namespace ghostd::runtime::engine_testing
