// The greedy choice over one row of logits, shared by host sampling and the
// CPU backend's argmax op (the CUDA kernel follows the same rule).
#pragma once

#include <cstdint>
#include <span>

namespace ghostd::runtime {

// Index of the largest value; the first one on ties; NaN is never chosen
// (0 for an empty row or a row of NaN).
inline int32_t argmax(std::span<const float> x) {
  int32_t best = -1;
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i] != x[i]) continue;  // NaN
    if (best < 0 || x[i] > x[static_cast<size_t>(best)]) best = static_cast<int32_t>(i);
  }
  return best < 0 ? 0 : best;
}

}  // namespace ghostd::runtime
