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

namespace ghostd::runtime {
namespace {

using namespace engine_testing;


// The CPU backend, until `arm()`ed: then the next matmul "traps" like a GPU
// kernel with an illegal address, and the backend is dead from then on.
class DyingBackend final : public Backend {
 public:
  explicit DyingBackend(std::unique_ptr<Backend> in) : in_(std::move(in)) {}
  void arm() { armed_ = true; }
  std::string name() const override { return "dying-" + in_->name(); }
  Result<Buffer> alloc(size_t b) override { return in_->alloc(b); }
  void upload(void* d, const void* s, size_t n) override { in_->upload(d, s, n); }
  void download(void* d, const void* s, size_t n) override { in_->download(d, s, n); }
  void fill_zero(void* d, size_t n) override { in_->fill_zero(d, n); }
  Status synchronize() override {
    if (dead_) return Error{"dying backend: an illegal memory access was encountered"};
    return in_->synchronize();
  }
  std::string fatal_error() const override { return dead_ ? "dying backend: illegal address (sticky)" : ""; }
  size_t free_memory() const override { return in_->free_memory(); }
  Result<Weight> load_weight(const TensorView& t) override { return in_->load_weight(t); }
  void embedding(const Weight& t, const int32_t* ids, int n, float* out) override { in_->embedding(t, ids, n, out); }
  void rms_norm(const float* x, const Weight& w, int r, int d, float e, float* o) override { in_->rms_norm(x, w, r, d, e, o); }
  void matmul(const float* x, int rows, const Weight& w, const Weight* b, float* out) override {
    if (armed_) dead_ = true;
    if (!dead_) in_->matmul(x, rows, w, b, out);
  }
  void rope(float* x, int r, int nh, int hd, const int32_t* p, const float* f) override { in_->rope(x, r, nh, hd, p, f); }
  void kv_store(const float* k, const float* v, const BatchView& b, int d, KvLayerView l) override {
    in_->kv_store(k, v, b, d, l);
  }
  void attention(const float* q, const BatchView& b, const AttentionShape& s, KvLayerView l, float* o) override {
    in_->attention(q, b, s, l, o);
  }
  void silu_mul(const float* g, const float* u, int64_t n, float* o) override { in_->silu_mul(g, u, n, o); }
  void add(float* x, const float* y, int64_t n) override { in_->add(x, y, n); }
  void gelu_mul(const float* g, const float* u, int64_t n, float* o) override { in_->gelu_mul(g, u, n, o); }
  void gelu(const float* x, int64_t n, float* o) override { in_->gelu(x, n, o); }
  void scale(float* x, float s, int64_t n) override { in_->scale(x, s, n); }
  void layer_norm(const float* x, const Weight& w, const Weight& b, int r, int d, float e, float* o) override {
    in_->layer_norm(x, w, b, r, d, e, o);
  }
  void add_layer_norm(float* x, const float* y, const Weight& w, const Weight& b, int r, int d, float e,
                      float* o) override {
    in_->add_layer_norm(x, y, w, b, r, d, e, o);
  }
  void add_rms_norm(float* x, const float* y, const Weight& w, int r, int d, float e, float* o) override {
    in_->add_rms_norm(x, y, w, r, d, e, o);
  }
  void rope_store_kv(float* q, float* k, const float* v, const BatchView& b, const AttentionShape& s, const float* f,
                     KvLayerView l) override {
    in_->rope_store_kv(q, k, v, b, s, f, l);
  }
  void gather_rows(const float* x, const int32_t* r, int n, int d, float* o) override { in_->gather_rows(x, r, n, d, o); }
  void argmax_rows(const float* x, int r, int c, int32_t* o) override { in_->argmax_rows(x, r, c, o); }
  void copy_kv_blocks(std::span<const KvLayerView> l, std::span<const KvBlockCopy> c, int bs, int d) override {
    in_->copy_kv_blocks(l, c, bs, d);
  }

 private:
  std::unique_ptr<Backend> in_;
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
