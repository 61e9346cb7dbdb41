#include "runtime/core/copy_waves.h"

#include <algorithm>
#include <cassert>

namespace ghostd::runtime {

void CopyWaves::reserve(size_t copies) {
  ends_.reserve(copies);
  reads_.reserve(copies);
  writes_.reserve(copies);
}

const std::vector<size_t>& CopyWaves::split(std::span<const KvBlockCopy> copies, size_t max_copies) {
  assert(max_copies >= 1);
  ends_.clear();
  reads_.clear();
  writes_.clear();
  // A wave holds a few dozen copies: linear scans beat a set.
  auto has = [](const std::vector<int32_t>& v, int32_t b) { return std::find(v.begin(), v.end(), b) != v.end(); };
  for (size_t i = 0; i < copies.size(); ++i) {
    const KvBlockCopy& c = copies[i];
    const bool hazard = has(writes_, c.src) || has(writes_, c.dst) || has(reads_, c.dst);
    if (!writes_.empty() && (hazard || writes_.size() >= max_copies)) {
      ends_.push_back(i);
      reads_.clear();
      writes_.clear();
    }
    reads_.push_back(c.src);
    writes_.push_back(c.dst);
  }
  if (!copies.empty()) ends_.push_back(copies.size());
  return ends_;
}

}  // namespace ghostd::runtime
