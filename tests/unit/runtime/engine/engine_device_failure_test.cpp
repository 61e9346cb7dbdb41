// A device that fails for good (a sticky CUDA error, simulated over the CPU
// backend): the engine fails the step's jobs and every later one, once,
// with the reason.
#include "runtime/engine/engine.h"

#include <doctest/doctest.h>

#include <atomic>
#include <memory>
#include <random>
#include <string>

#include "runtime/model/model_loader.h"
#include "tests/unit/runtime/engine/engine_harness.h"
#include "tests/unit/runtime/forwarding_backend.h"

namespace ghostd::runtime {
namespace {

using namespace engine_testing;


// The CPU backend, until `arm()`ed: then the next matmul "traps" like a GPU
// kernel with an illegal address, and the backend is dead from then on.
class DyingBackend final : public test::ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  void arm() { armed_ = true; }
  std::string name() const override { return "dying-" + ForwardingBackend::name(); }
  Status synchronize() override {
    if (dead_) return Error{"dying backend: an illegal memory access was encountered"};
    return ForwardingBackend::synchronize();
  }
  std::string fatal_error() const override { return dead_ ? "dying backend: illegal address (sticky)" : ""; }
  void matmul(const float* x, int rows, const Weight& w, const Weight* b, float* out) override {
    if (armed_) dead_ = true;
    if (!dead_) ForwardingBackend::matmul(x, rows, w, b, out);
  }

 private:
  std::atomic<bool> armed_{false};
  bool dead_ = false;
};

TEST_CASE("engine: a sticky device error fails the step's jobs and every later one, with the reason") {
  if (test_device() != "cpu") return;  // the failure is simulated over the CPU backend
  test::TempDir dir;
  write_model(dir.path());
  auto owned = std::make_unique<DyingBackend>(make_cpu_backend({.threads = 1}));
  DyingBackend& be = *owned;
  auto m = load_model(dir.path(), be, /*need_tokenizer=*/false);
  REQUIRE(m.ok());
  EngineOptions o = small_options();
  o.kv_memory_bytes = 64 * KvStorage::bytes_per_block(m->config, o.block_size);
  auto engine = Engine::create(*m->model, o);
  REQUIRE(engine.ok());
  std::mt19937 rng(5);
  Outcome ok = run_alone(**engine, greedy_job(random_prompt(rng, 12), 4));
  CHECK(ok.result.status == JobStatus::kFinished);

  be.arm();
  Collector c;
  for (int i = 0; i < 3; ++i) (*engine)->submit(greedy_job(random_prompt(rng, 12), 8, "d" + std::to_string(i)), c.callbacks());
  REQUIRE(c.wait_all());
  for (size_t i = 0; i < 3; ++i) {
    CAPTURE(i);
    CHECK(c.at(i).done_calls == 1);
    CHECK(c.at(i).result.status == JobStatus::kFailed);
    CHECK(c.at(i).result.error.find("the device failed") != std::string::npos);
    CHECK(c.at(i).result.error.find("illegal address") != std::string::npos);
  }
  // Later jobs fail at once with the same reason instead of running.
  Outcome later = run_alone(**engine, greedy_job(random_prompt(rng, 12), 4));
  CHECK(later.result.status == JobStatus::kFailed);
  CHECK(later.result.error.find("the device failed") != std::string::npos);
  CHECK((*engine)->stats().fatal_error.find("illegal address") != std::string::npos);
  check_clean_shutdown(**engine);
}


}  // namespace
}  // namespace ghostd::runtime
