// Draft-tree attention (see Backend::attention): which KV index a token with
// a tree mask reads for each logical position. Host and device code.
#pragma once

#include <cstdint>

namespace ghostd::runtime {

#if defined(__CUDACC__)
#define GHOSTD_HOST_DEVICE __host__ __device__
#else
#define GHOSTD_HOST_DEVICE
#endif

// Logical position q of a token whose sequence had `base` tokens of KV
// before the step: q itself below base, else base + the (q - base)-th set
// bit of `mask` (its ancestors in tree order, then itself).
GHOSTD_HOST_DEVICE inline int tree_kv_index(uint64_t mask, int base, int q) {
  if (q < base) return q;
  for (int e = q - base; e > 0; --e) mask &= mask - 1;  // drop the lowest set bits
  int bit = 0;
  while (mask != 0 && !(mask & 1)) {
    mask >>= 1;
    ++bit;
  }
  return base + bit;
}

// The KV length before the step of a tree token at `position` with `mask`.
GHOSTD_HOST_DEVICE inline int tree_base(uint64_t mask, int position) {
  int bits = 0;
  for (uint64_t m = mask; m != 0; m &= m - 1) ++bits;
  return position + 1 - bits;
}

#undef GHOSTD_HOST_DEVICE

}  // namespace ghostd::runtime
