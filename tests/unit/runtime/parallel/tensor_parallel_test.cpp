// Tensor parallelism over CPU ranks: a model sharded over N ranks gives the
// logits of one rank (within float32 summation order) and the same greedy
// tokens, reads only its slices of the weight files, refuses shapes that do
// not split, and a rank that dies or stalls fails the step instead of
// hanging the group.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <random>
#include <thread>

#include "runtime/engine/engine.h"
#include "runtime/engine/sampling.h"
#include "runtime/model/model_loader.h"
#include "runtime/parallel/device_group.h"
#include "tests/unit/runtime/engine/engine_harness.h"
#include "tests/unit/runtime/forwarding_backend.h"

namespace ghostd::runtime {
namespace {

using namespace engine_testing;
using namespace std::chrono_literals;

struct Sharded {
  DeviceGroup group;
  LoadedModel loaded;
};

Sharded load_sharded(const std::filesystem::path& path, int ranks) {
  Sharded s;
  auto g = make_device_group(std::vector<std::string>(static_cast<size_t>(ranks), "cpu"), {.cpu_threads = ranks});
  REQUIRE_MESSAGE(g.ok(), (g.ok() ? "" : g.error().message));
  s.group = std::move(*g);
  auto m = load_model(path, s.group.backend_list(), s.group.comm_list(), /*need_tokenizer=*/false);
  REQUIRE_MESSAGE(m.ok(), (m.ok() ? "" : m.error().message));
  s.loaded = std::move(*m);
  return s;
}

// Prefill of `prompts` (all logits rows), then `steps` greedy decode steps of
// all of them together: every logits row and every greedy token.
struct Run {
  std::vector<float> logits;
  std::vector<std::vector<int32_t>> tokens;
};

Run run(Model& model, const std::vector<std::vector<int32_t>>& prompts, int steps) {
  const int bs = 16, vocab = model.config().vocab_size;
  const size_t n = prompts.size();
  size_t longest = 0;
  for (const auto& p : prompts) longest = std::max(longest, p.size());
  const int per_seq = static_cast<int>((longest + steps + bs - 1) / bs);
  auto kv = KvStorage::create(model, per_seq * static_cast<int>(n), bs);
  REQUIRE(kv.ok());
  std::vector<std::vector<int32_t>> tables(n);
  for (size_t s = 0; s < n; ++s)
    for (int b = 0; b < per_seq; ++b) tables[s].push_back(static_cast<int32_t>(b * n + s));
  Run out;
  out.tokens = prompts;
  std::vector<float> logits;
  for (int step = 0; step <= steps; ++step) {
    std::vector<SequenceInput> batch(n);
    for (size_t s = 0; s < n; ++s) {
      batch[s].block_table = tables[s];
      if (step == 0) {
        batch[s].tokens = prompts[s];
        batch[s].all_logits = true;
      } else {
        batch[s].tokens = std::span<const int32_t>(&out.tokens[s].back(), 1);
        batch[s].start_pos = static_cast<int32_t>(out.tokens[s].size() - 1);
      }
    }
    REQUIRE(model.reserve(Model::capacity_for(batch)).ok());
    Status st = model.forward(batch, *kv, logits);
    REQUIRE_MESSAGE(st.ok(), st.message());
    out.logits.insert(out.logits.end(), logits.begin(), logits.end());
    size_t row = 0;
    for (size_t s = 0; s < n; ++s) {
      row += batch[s].all_logits ? batch[s].tokens.size() : 1;
      if (step < steps)
        out.tokens[s].push_back(argmax(std::span<const float>(logits.data() + (row - 1) * vocab, vocab)));
    }
  }
  return out;
}

// Largest |a - b| relative to the largest |b| of the row.
double max_relative(const std::vector<float>& a, const std::vector<float>& b, int vocab) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t r = 0; r < a.size() / vocab; ++r) {
    double scale = 1e-6, diff = 0;
    for (int i = 0; i < vocab; ++i) {
      scale = std::max(scale, std::fabs(static_cast<double>(b[r * vocab + i])));
      diff = std::max(diff, std::fabs(static_cast<double>(a[r * vocab + i]) - b[r * vocab + i]));
    }
    worst = std::max(worst, diff / scale);
  }
  return worst;
}

std::vector<std::vector<int32_t>> prompts(int vocab, uint64_t seed) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::vector<std::vector<int32_t>> out;
  for (int len : {23, 5, 40}) {
    std::vector<int32_t> p(static_cast<size_t>(len));
    for (auto& t : p) t = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab));
    out.push_back(p);
  }
  return out;
}

TEST_CASE("tensor parallel: 2 and 4 CPU ranks give the logits of one rank and its greedy tokens") {
  for (const char* arch : {"qwen2", "starcoder2", "gemma"}) {
    CAPTURE(arch);
    setenv("GHOSTD_TEST_ARCH", arch, 1);
    test::TempDir dir;
    write_model(dir.path());
    unsetenv("GHOSTD_TEST_ARCH");
    auto one = make_cpu_backend({.threads = 1});
    auto base = load_model(dir.path(), *one, false);
    REQUIRE(base.ok());
    const auto ps = prompts(base->config.vocab_size, 7);
    const Run want = run(*base->model, ps, 12);
    for (int n : {1, 2, 4}) {
      CAPTURE(n);
      Sharded s = load_sharded(dir.path(), n);  // n = 1: the sharded path with one rank
      CHECK(s.loaded.model->ranks() == n);
      const Run got = run(*s.loaded.model, ps, 12);
      CHECK(got.tokens == want.tokens);
      CHECK(max_relative(got.logits, want.logits, base->config.vocab_size) < 1e-4);
      // Batched vs alone stays bit-exact within the group.
      const Run alone = run(*s.loaded.model, {ps[1]}, 12);
      CHECK(alone.tokens[0] == got.tokens[1]);
    }
  }
}

TEST_CASE("tensor parallel: the bundled model over 2 ranks; 4 ranks do not divide its 6 heads") {
  const std::filesystem::path bundled = GHOSTD_SOURCE_DIR "/models/qwen2-code-small";
  auto one = make_cpu_backend({.threads = 1});
  auto base = load_model(bundled, *one, false);
  REQUIRE(base.ok());
  const auto ps = prompts(base->config.vocab_size, 11);
  const Run want = run(*base->model, ps, 8);
  Sharded s = load_sharded(bundled, 2);
  const Run got = run(*s.loaded.model, ps, 8);
  CHECK(got.tokens == want.tokens);
  CHECK(max_relative(got.logits, want.logits, base->config.vocab_size) < 1e-4);

  auto g = make_device_group({"cpu", "cpu", "cpu", "cpu"}, {.cpu_threads = 4});
  REQUIRE(g.ok());
  auto m = load_model(bundled, g->backend_list(), g->comm_list(), false);
  REQUIRE_FALSE(m.ok());
  CHECK(m.error().message.find("6 attention heads do not split over 4 ranks") != std::string::npos);
}

TEST_CASE("tensor parallel: shapes that do not split are refused, naming the flag") {
  auto config = [](int heads, int kv_heads, int inter, int vocab) {
    ModelConfig c;
    c.hidden_size = 64;
    c.num_heads = heads;
    c.num_kv_heads = kv_heads;
    c.head_dim = 16;
    c.intermediate_size = inter;
    c.vocab_size = vocab;
    return c;
  };
  // The error of the last rank (the one a short vocabulary starves).
  auto err = [](const ModelConfig& c, int n) {
    for (int r = 0; r < n; ++r) {
      auto s = plan_shard(c, r, n);
      if (!s.ok()) return s.error().message;
    }
    return std::string();
  };
  CHECK(err(config(4, 2, 96, 384), 2).empty());
  CHECK(err(config(4, 2, 96, 384), 4).empty());  // KV heads replicated
  CHECK(err(config(4, 2, 96, 384), 3).find("4 attention heads do not split over 3 ranks; pick a --tensor-parallel") !=
        std::string::npos);
  CHECK(err(config(12, 3, 96, 384), 2).find("3 KV heads do not split over 2 ranks") != std::string::npos);
  CHECK(err(config(12, 3, 96, 384), 4).find("4 ranks cannot share 3 KV heads evenly") != std::string::npos);
  CHECK(err(config(4, 4, 98, 384), 4).find("MLP's 98 columns do not split over 4 ranks") != std::string::npos);
  CHECK(err(config(6, 2, 96, 10), 6).find("leaves rank 5 of 6 none") != std::string::npos);
  // Replicated KV heads: each rank holds the KV head its query heads read.
  const ModelConfig c = config(8, 2, 96, 384);
  for (int r = 0; r < 4; ++r) {
    auto s = plan_shard(c, r, 4);
    REQUIRE(s.ok());
    CHECK(s->heads == 2);
    CHECK(s->kv_heads == 1);
    CHECK(s->kv_head0 == s->head0 / (c.num_heads / c.num_kv_heads));
  }
  // Uneven vocabulary: the last slice is shorter; together they cover it once.
  int64_t covered = 0;
  for (int r = 0; r < 3; ++r) {
    auto s = plan_shard(config(6, 3, 96, 385), r, 3);
    REQUIRE(s.ok());
    CHECK(s->vocab0 == covered);
    covered += s->vocab;
  }
  CHECK(covered == 385);
}

TEST_CASE("tensor parallel: each rank reads only its slices of the weight files") {
  test::TempDir dir;
  write_model(dir.path());
  auto one = make_cpu_backend({.threads = 1});
  auto base = load_model(dir.path(), *one, false);
  REQUIRE(base.ok());
  size_t full = 0;
  for (const WeightRead& r : base->model->weight_reads(0)) full += r.bytes;
  const ModelConfig& c = base->config;
  // Replicated: the norms (every rank reads them).
  const size_t norms = static_cast<size_t>(2 * c.num_layers + 1) * c.hidden_size * sizeof(float);
  for (int n : {2, 4}) {
    CAPTURE(n);
    Sharded s = load_sharded(dir.path(), n);
    std::map<const std::byte*, std::pair<size_t, int>> seen;  // start -> (bytes, rank)
    size_t total = 0;
    for (int r = 0; r < n; ++r) {
      size_t mine = 0;
      for (const WeightRead& w : s.loaded.model->weight_reads(r)) {
        mine += w.bytes;
        seen.emplace(w.data, std::make_pair(w.bytes, r));
      }
      CAPTURE(r);
      // About 1/n of the model: the sharded matrices plus the norms (and, at
      // 4 ranks over 2 KV heads, the replicated K/V rows).
      CHECK(mine < full / n + norms + full / 8);
      total += mine;
    }
    // Nothing read twice but the replicated tensors.
    // K and V rows with their biases (Qwen2), per layer.
    const size_t kv_rows =
        static_cast<size_t>(c.num_layers) * 2 * c.num_kv_heads * c.head_dim * (c.hidden_size + 1) * sizeof(float);
    const size_t replicated = (n - 1) * norms + (n > c.num_kv_heads ? (n / c.num_kv_heads - 1) * kv_rows : 0);
    CHECK(total <= full + replicated);
    CHECK(total >= full);
    // Reads of different ranks do not overlap, except identical replicated ones.
    const std::byte* end = nullptr;
    for (const auto& [start, info] : seen) {
      if (end != nullptr && start < end) FAIL("overlapping reads at a slice of rank " << info.second);
      end = start + info.first;
    }
  }
}

// Rank 1 of a group: dies (every op a no-op, synchronize fails, like a GPU
// after a trap) or stalls (sleeps 1 s in one matmul, past the group's timeout).
class FailingRank final : public test::ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  enum class Mode { kNone, kDie, kStall };
  std::atomic<Mode> mode{Mode::kNone};
  Status synchronize() override {
    if (mode == Mode::kDie) return Error{"rank backend: an illegal memory access was encountered"};
    return ForwardingBackend::synchronize();
  }
  std::string fatal_error() const override {
    return mode == Mode::kDie ? "rank backend: illegal address (sticky)" : ForwardingBackend::fatal_error();
  }
  void matmul(const float* x, int rows, const Weight& w, const Weight* b, float* out) override {
    if (mode == Mode::kDie) return;
    if (mode == Mode::kStall && !stalled_.exchange(true)) std::this_thread::sleep_for(1000ms);
    ForwardingBackend::matmul(x, rows, w, b, out);
  }
  void all_reduce_sum(Communicator& c, float* x, int64_t n) override {
    if (mode != Mode::kDie) ForwardingBackend::all_reduce_sum(c, x, n);
  }
  void all_gather(Communicator& c, const float* in, int64_t n, float* out) override {
    if (mode != Mode::kDie) ForwardingBackend::all_gather(c, in, n, out);
  }

 private:
  std::atomic<bool> stalled_{false};
};

TEST_CASE("tensor parallel: a rank that dies or stalls fails the jobs and the engine stops serving") {
  for (auto mode : {FailingRank::Mode::kDie, FailingRank::Mode::kStall}) {
    CAPTURE(static_cast<int>(mode));
    test::TempDir dir;
    write_model(dir.path());
    auto rank0 = make_cpu_backend({.threads = 1});
    auto owned = std::make_unique<FailingRank>(make_cpu_backend({.threads = 1}));
    FailingRank& rank1 = *owned;
    // Long enough that a slow sanitizer build's healthy steps never time out.
    auto comms = make_host_communicators(2, {.timeout = 300ms});
    REQUIRE(comms.ok());
    Backend* backends[] = {rank0.get(), owned.get()};
    Communicator* cs[] = {(*comms)[0].get(), (*comms)[1].get()};
    auto m = load_model(dir.path(), backends, cs, false);
    REQUIRE(m.ok());
    EngineOptions o = small_options();
    o.kv_memory_bytes = 64 * m->model->kv_bytes_per_block(o.block_size);
    auto engine = Engine::create(*m->model, o);
    REQUIRE(engine.ok());
    std::mt19937 rng(3);
    Outcome ok = run_alone(**engine, greedy_job(random_prompt(rng, 12), 4));
    CHECK(ok.result.status == JobStatus::kFinished);

    rank1.mode = mode;
    const auto t0 = std::chrono::steady_clock::now();
    Collector c;
    for (int i = 0; i < 2; ++i)
      (*engine)->submit(greedy_job(random_prompt(rng, 12), 8, "r" + std::to_string(i)), c.callbacks());
    REQUIRE(c.wait_all());
    CHECK(std::chrono::steady_clock::now() - t0 < 10s);
    for (size_t i = 0; i < 2; ++i) {
      CAPTURE(i);
      CHECK(c.at(i).result.status == JobStatus::kFailed);
      CHECK(c.at(i).result.error.find("the device failed") != std::string::npos);
    }
    const std::string fatal = (*engine)->stats().fatal_error;
    CHECK(fatal.find(mode == FailingRank::Mode::kDie ? "illegal" : "waited 300 ms") != std::string::npos);
    Outcome later = run_alone(**engine, greedy_job(random_prompt(rng, 12), 4));
    CHECK(later.result.status == JobStatus::kFailed);
    check_clean_shutdown(**engine);
  }
}

}  // namespace
}  // namespace ghostd::runtime
