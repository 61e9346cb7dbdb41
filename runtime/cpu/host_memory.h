#pragma once
// Large host buffers in transparent huge pages.
//
// A batch-1 decode streams every weight once per token. On 4 KiB pages that
// is a TLB miss every 4 KiB (a two-level walk under a hypervisor) and the
// hardware prefetchers stop at every page boundary; on 2 MiB pages neither
// happens. Linux gives anonymous memory huge pages when asked
// (madvise(MADV_HUGEPAGE), honoured in the default "madvise" THP mode); a
// mapped model file's page cache mostly stays in 4 KiB pages.
#include <cstddef>
#include <utility>

#include "runtime/cpu/thread_pool.h"

namespace ghostd::runtime::cpu {

// Anonymous, zero-filled memory aligned to 2 MiB, asked for huge pages.
// Movable, not copyable. Thread-safety: none needed (owned by one backend).
class HostRegion {
 public:
  static constexpr size_t kHugePage = size_t{2} << 20;

  HostRegion() = default;
  // Null data() when the memory cannot be had (the caller reports it).
  explicit HostRegion(size_t bytes);
  HostRegion(HostRegion&& o) noexcept
      : base_(std::exchange(o.base_, nullptr)), mapped_(std::exchange(o.mapped_, 0)),
        data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)),
        huge_(std::exchange(o.huge_, false)) {}
  HostRegion& operator=(HostRegion&& o) noexcept;
  HostRegion(const HostRegion&) = delete;
  HostRegion& operator=(const HostRegion&) = delete;
  ~HostRegion() { reset(); }

  void* data() const { return data_; }
  size_t size() const { return bytes_; }
  // Whether the kernel was asked for huge pages (it may still back parts
  // with small ones).
  bool huge() const { return huge_; }

 private:
  void reset();
  void* base_ = nullptr;
  size_t mapped_ = 0;
  void* data_ = nullptr;
  size_t bytes_ = 0;
  bool huge_ = false;
};

// Copies bytes into dst on the pool's threads, each a contiguous run of whole
// huge pages (no page is faulted in by two threads), at least 16 MiB each.
void parallel_copy(void* dst, const void* src, size_t bytes, ThreadPool& pool);

}  // namespace ghostd::runtime::cpu
