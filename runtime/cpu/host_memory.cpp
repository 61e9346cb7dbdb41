#include "runtime/cpu/host_memory.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

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

void parallel_copy(void* dst, const void* src, size_t bytes, int threads) {
  constexpr size_t kChunk = size_t{16} << 20;
  const int n = static_cast<int>(std::clamp<size_t>(bytes / kChunk, 1, static_cast<size_t>(std::max(1, threads))));
  if (n == 1) {
    std::memcpy(dst, src, bytes);
    return;
  }
  // Whole huge pages per thread, so no page is faulted in by two threads.
  const size_t per = (bytes / static_cast<size_t>(n) + HostRegion::kHugePage - 1) / HostRegion::kHugePage *
                     HostRegion::kHugePage;
  std::vector<std::thread> pool;
  for (int t = 0; t < n; ++t) {
    const size_t b = std::min(bytes, per * static_cast<size_t>(t)), e = std::min(bytes, b + per);
    if (b >= e) break;
    pool.emplace_back([=] { std::memcpy(static_cast<char*>(dst) + b, static_cast<const char*>(src) + b, e - b); });
  }
  for (auto& th : pool) th.join();
}

}  // namespace ghostd::runtime::cpu
