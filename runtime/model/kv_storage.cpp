#include "runtime/model/kv_storage.h"

#include <atomic>
#include <string>

#include "runtime/model/model.h"

namespace ghostd::runtime {

size_t KvStorage::bytes_per_block(const ModelConfig& c, int block_size) {
  // K and V, float32, every layer.
  return static_cast<size_t>(2) * c.num_layers * block_size * c.num_kv_heads * c.head_dim *
         sizeof(float);
}

Result<KvStorage> KvStorage::make(int num_blocks, int block_size, bool scratch_block) {
  if (num_blocks <= 0 || block_size <= 0) return Error{"kv cache: need at least one block of at least one slot"};
  static std::atomic<uint64_t> next_id{1};
  KvStorage kv;
  kv.id_ = next_id++;
  kv.num_blocks_ = num_blocks;
  kv.scratch_block_ = scratch_block ? num_blocks : -1;
  kv.block_size_ = block_size;
  return kv;
}

Status KvStorage::add_part(KvStorage& kv, Backend& backend, int layers, int kv_dim) {
  Part part;
  part.kv_dim = kv_dim;
  const size_t allocated = static_cast<size_t>(kv.num_blocks_) + (kv.scratch_block_ >= 0 ? 1 : 0);
  const size_t bytes = allocated * kv.block_size_ * kv_dim * sizeof(float);
  for (int l = 0; l < layers; ++l) {
    auto k = backend.alloc(bytes);
    if (!k) return Error{"kv cache: " + k.error().message};
    auto v = backend.alloc(bytes);
    if (!v) return Error{"kv cache: " + v.error().message};
    // Zeroed so a slot read before it is written (a bookkeeping bug) is
    // deterministic rather than garbage.
    backend.fill_zero(k->get(), bytes);
    backend.fill_zero(v->get(), bytes);
    part.views.push_back({k->as<float>(), v->as<float>()});
    part.k.push_back(std::move(*k));
    part.v.push_back(std::move(*v));
  }
  kv.parts_.push_back(std::move(part));
  return {};
}

Result<KvStorage> KvStorage::create(Backend& backend, const ModelConfig& c, int num_blocks, int block_size,
                                    bool scratch_block) {
  auto kv = make(num_blocks, block_size, scratch_block);
  if (!kv) return kv;
  GHOSTD_TRY_STATUS(add_part(*kv, backend, c.num_layers, c.num_kv_heads * c.head_dim));
  return kv;
}

Result<KvStorage> KvStorage::create(const Model& model, int num_blocks, int block_size, bool scratch_block) {
  auto kv = make(num_blocks, block_size, scratch_block);
  if (!kv) return kv;
  for (int r = 0; r < model.ranks(); ++r) {
    Status st = add_part(*kv, model.backend(r), model.config().num_layers,
                         model.shard(r).kv_heads * model.config().head_dim);
    if (!st.ok()) {
      if (model.ranks() == 1) return st.error();
      return Error{"rank " + std::to_string(r) + ": " + st.message()};
    }
  }
  return kv;
}

}  // namespace ghostd::runtime
