// A Backend that passes every call to another one: tests derive from it to
// simulate a device that fails, stalls or dies in one op.
#pragma once

#include <memory>
#include <string>

#include "runtime/core/backend.h"

namespace ghostd::test {

using namespace ghostd::runtime;

class ForwardingBackend : public Backend {
 public:
  explicit ForwardingBackend(std::unique_ptr<Backend> in) : in_(std::move(in)) {}
  std::string name() const override { return in_->name(); }
  Result<Buffer> alloc(size_t b) override { return in_->alloc(b); }
  void upload(void* d, const void* s, size_t n) override { in_->upload(d, s, n); }
  void download(void* d, const void* s, size_t n) override { in_->download(d, s, n); }
  void fill_zero(void* d, size_t n) override { in_->fill_zero(d, n); }
  Status synchronize() override { return in_->synchronize(); }
  std::string fatal_error() const override { return in_->fatal_error(); }
  size_t free_memory() const override { return in_->free_memory(); }
  Result<Weight> load_weight(const TensorView& t) override { return in_->load_weight(t); }
  void embedding(const Weight& t, const int32_t* ids, int n, float* out) override { in_->embedding(t, ids, n, out); }
  void rms_norm(const float* x, const Weight& w, int r, int d, float e, float* o) override { in_->rms_norm(x, w, r, d, e, o); }
  void matmul(const float* x, int rows, const Weight& w, const Weight* b, float* out) override {
    in_->matmul(x, rows, w, b, out);
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
  void embedding_slice(const Weight& t, const int32_t* ids, int n, int64_t first, float* out) override {
    in_->embedding_slice(t, ids, n, first, out);
  }
  void copy_columns(const float* s, int64_t ss, int r, int64_t c, float* d, int64_t ds) override {
    in_->copy_columns(s, ss, r, c, d, ds);
  }
  void all_reduce_sum(Communicator& comm, float* x, int64_t n) override { in_->all_reduce_sum(comm, x, n); }
  void all_gather(Communicator& comm, const float* in, int64_t n, float* out) override {
    in_->all_gather(comm, in, n, out);
  }

 protected:
  Backend& inner() { return *in_; }

 private:
  std::unique_ptr<Backend> in_;
};

}  // namespace ghostd::test
