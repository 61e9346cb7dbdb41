// Ordered block copies run in waves (the CUDA backend's copy_kv_blocks: one
// kernel launch per wave, every copy of a wave at once).
//
// Order matters: within one schedule a copy's source can be a block that an
// earlier copy writes, or the destination of an earlier copy can be read by
// a later one (a block evicted and reused). A wave therefore ends before a
// copy that reads or writes a block an earlier copy of the wave writes, or
// writes a block one of them reads; then running the waves one after the
// other gives the result of copying one by one in order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "runtime/core/backend.h"

namespace ghostd::runtime {

// Keeps its buffers between calls, so a step allocates nothing once they
// have grown (reserve). Thread-safety: one owner.
class CopyWaves {
 public:
  void reserve(size_t copies);
  // The end index (exclusive) of each wave of `copies`, in order; no wave
  // holds more than `max_copies` (>= 1) copies. Empty for no copies. Valid
  // until the next call.
  const std::vector<size_t>& split(std::span<const KvBlockCopy> copies, size_t max_copies);

 private:
  std::vector<size_t> ends_;
  std::vector<int32_t> reads_, writes_;  // blocks the current wave reads, writes
};

}  // namespace ghostd::runtime
