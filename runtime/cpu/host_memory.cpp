#include "runtime/cpu/host_memory.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace ghostd::runtime::cpu {

HostRegion::HostRegion(size_t bytes) {
  if (bytes == 0) return;
  // Over-allocate by one huge page and trim, so data_ is 2 MiB aligned and the
  // kernel can back every whole 2 MiB of it with one page.
  const size_t want = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  const size_t len = want + kHugePage;
  void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return;
  const auto addr = reinterpret_cast<uintptr_t>(p);
  const uintptr_t aligned = (addr + kHugePage - 1) / kHugePage * kHugePage;
  if (aligned > addr) ::munmap(p, aligned - addr);
  const uintptr_t end = addr + len, keep_end = aligned + want;
  if (end > keep_end) ::munmap(reinterpret_cast<void*>(keep_end), end - keep_end);
  base_ = reinterpret_cast<void*>(aligned);
  mapped_ = want;
  data_ = base_;
  bytes_ = bytes;
#ifdef MADV_HUGEPAGE
  huge_ = ::madvise(base_, mapped_, MADV_HUGEPAGE) == 0;
#endif
}

HostRegion& HostRegion::operator=(HostRegion&& o) noexcept {
  if (this != &o) {
    reset();
    base_ = std::exchange(o.base_, nullptr);
    mapped_ = std::exchange(o.mapped_, 0);
    data_ = std::exchange(o.data_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
    huge_ = std::exchange(o.huge_, false);
  }
  return *this;
}

void HostRegion::reset() {
  if (base_ != nullptr) ::munmap(base_, mapped_);
  base_ = data_ = nullptr;
  mapped_ = bytes_ = 0;
  huge_ = false;
}

void parallel_copy(void* dst, const void* src, size_t bytes, ThreadPool& pool) {
  constexpr size_t kPage = HostRegion::kHugePage;
  constexpr int64_t kGrainPages = (size_t{16} << 20) / kPage;
  const auto pages = static_cast<int64_t>((bytes + kPage - 1) / kPage);
  pool.parallel_for(pages, kGrainPages, [&](int64_t begin, int64_t end) {
    const size_t b = static_cast<size_t>(begin) * kPage;
    const size_t e = std::min(bytes, static_cast<size_t>(end) * kPage);
    if (b < e) std::memcpy(static_cast<char*>(dst) + b, static_cast<const char*>(src) + b, e - b);
  });
}

}  // namespace ghostd::runtime::cpu
