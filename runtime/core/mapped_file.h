// Read-only memory mapping of a whole file, so weights are used in place.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <filesystem>
#include <span>

#include "runtime/core/result.h"

namespace ghostd::runtime {

// What MappedFile::settle did: the bytes on 2 MiB page-table entries before
// and after, and whether it dropped the file's cached pages to re-read them.
struct PageCacheReport {
  size_t bytes = 0;          // the mapping's size
  size_t huge_before = 0;    // bytes mapped by 2 MiB entries after the first read
  size_t huge = 0;           // ... at the end
  bool measured = false;     // /proc/self/smaps was readable
  bool refreshed = false;    // the page cache was dropped and re-read once
  double seconds = 0;
};

// RAII owner of a read-only mapping; move-only. An empty file maps to an
// empty span. The mapped address does not change when the object moves, nor
// when settle() re-maps the file. Files of 2 MiB or more are mapped at a
// 2 MiB-aligned address with MADV_HUGEPAGE, so a kernel whose page cache
// holds the file in 2 MiB folios (Linux 6.x with large-folio filesystems:
// ext4 from 6.16, XFS) maps them with one TLB entry per 2 MiB.
// Thread-safety: immutable after open; bytes() may be read from any thread;
// settle() only while no thread reads the bytes.
class MappedFile {
 public:
  static Result<MappedFile> open(const std::filesystem::path& path);

  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  const std::filesystem::path& path() const { return path_; }

  // For weights read in place: reads the whole file into memory now (not at
  // the first forward pass) and, when the kernel maps only part of it with
  // 2 MiB entries (a file written or read before in small folios, e.g. just
  // downloaded), drops its cached pages once and reads it again, which the
  // kernel then caches in 2 MiB folios. Skipped for files larger than half
  // the machine's memory, and when nothing maps huge (an older kernel or
  // filesystem: re-reading could not help). The bytes and their address do
  // not change. A refresh is skipped if the path now names another file.
  PageCacheReport settle();

 private:
  MappedFile() = default;
  void reset();

  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

// Bytes of the mappings that start in [start, start + bytes) held by 2 MiB page-table
// entries (FilePmdMapped + AnonHugePages in /proc/self/smaps); -1 if unknown.
long long huge_mapped_bytes(const void* start, size_t bytes);

}  // namespace ghostd::runtime
