#include "runtime/core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>

namespace ghostd::runtime {

namespace {

constexpr size_t kHugePage = size_t{2} << 20;
constexpr int kMadvPopulateRead = 22;  // MADV_POPULATE_READ (Linux 5.14), absent from older headers

// Maps a file of 2 MiB or more at a 2 MiB-aligned address (reserve, place
// with MAP_FIXED, trim), so file offset k * 2 MiB falls on a huge-page
// boundary; smaller files as usual.
void* map_file(int fd, size_t size) {
  if (size < kHugePage) return ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const size_t reserve = size + kHugePage;
  void* r = ::mmap(nullptr, reserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (r == MAP_FAILED) return MAP_FAILED;
  const auto base = reinterpret_cast<uintptr_t>(r);
  const uintptr_t at = (base + kHugePage - 1) / kHugePage * kHugePage;
  void* p = ::mmap(reinterpret_cast<void*>(at), size, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    ::munmap(r, reserve);
    errno = err;
    return MAP_FAILED;
  }
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t end = at + (size + page - 1) / page * page;
  if (at > base) ::munmap(r, at - base);
  if (base + reserve > end) ::munmap(reinterpret_cast<void*>(end), base + reserve - end);
#ifdef MADV_HUGEPAGE
  ::madvise(p, size, MADV_HUGEPAGE);  // a hint: cold reads fill 2 MiB folios where the kernel can
#endif
  return p;
}

// Faults every page in (one call where the kernel has MADV_POPULATE_READ).
void populate(const std::byte* p, size_t n) {
  if (::madvise(const_cast<std::byte*>(p), n, kMadvPopulateRead) == 0) return;
  const auto page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  volatile unsigned char sink = 0;
  for (size_t i = 0; i < n; i += page) sink = sink ^ static_cast<unsigned char>(p[i]);
  (void)sink;
}

}  // namespace

long long huge_mapped_bytes(const void* start, size_t bytes) {
  std::ifstream in("/proc/self/smaps");
  if (!in) return -1;
  const auto lo = reinterpret_cast<uintptr_t>(start), hi = lo + bytes;
  std::string line;
  bool inside = false, found = false;
  long long kb = 0;
  while (std::getline(in, line)) {
    uintmax_t a = 0, b = 0;
    if (std::sscanf(line.c_str(), "%jx-%jx ", &a, &b) == 2 && line.find(':') > line.find(' ')) {
      inside = a >= lo && a < hi;  // a VMA header; the range may have been split into several
      found = found || inside;
      continue;
    }
    if (!inside) continue;
    long long v = 0;
    if (std::sscanf(line.c_str(), "FilePmdMapped: %lld kB", &v) == 1 ||
        std::sscanf(line.c_str(), "AnonHugePages: %lld kB", &v) == 1)
      kb += v;
  }
  return found ? kb * 1024 : -1;
}

Result<MappedFile> MappedFile::open(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Error{"cannot open " + path.string() + ": " + std::strerror(errno)};
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return Error{"cannot stat " + path.string() + ": " + std::strerror(err)};
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Error{"cannot map " + path.string() + ": not a regular file"};
  }
  MappedFile file;
  file.path_ = path;
  file.size_ = static_cast<size_t>(st.st_size);
  file.dev_ = st.st_dev;
  file.ino_ = st.st_ino;
  if (file.size_ > 0) {
    void* p = map_file(fd, file.size_);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return Error{"cannot map " + path.string() + ": " + std::strerror(err)};
    }
    file.data_ = static_cast<const std::byte*>(p);
  }
  ::close(fd);  // the mapping keeps the file alive
  return file;
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      dev_(other.dev_),
      ino_(other.ino_) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    reset();
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    dev_ = other.dev_;
    ino_ = other.ino_;
  }
  return *this;
}

MappedFile::~MappedFile() { reset(); }

PageCacheReport MappedFile::settle() {
  PageCacheReport r;
  r.bytes = size_;
  if (size_ < kHugePage) return r;
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0 && size_ > static_cast<size_t>(pages) * static_cast<size_t>(page) / 2) return r;
  const auto t0 = std::chrono::steady_clock::now();
  auto done = [&] {
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
  };
  populate(data_, size_);
  const long long h = huge_mapped_bytes(data_, size_);
  if (h < 0) return done();
  r.measured = true;
  r.huge_before = r.huge = static_cast<size_t>(h);
  // Only whole aligned 2 MiB extents can map huge; the last partial one cannot.
  const size_t whole = size_ / kHugePage * kHugePage;
  if (r.huge + whole / 50 >= whole) return done();
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return done();
  struct stat st {};
  if (::fstat(fd, &st) != 0 || st.st_dev != dev_ || st.st_ino != ino_ ||
      static_cast<size_t>(st.st_size) != size_) {
    ::close(fd);  // the path names another file now: its pages are not ours to drop
    return done();
  }
  auto drop = [&](size_t off, size_t len) {
    // Drop this mapping's page-table entries (a private file mapping without
    // written pages: the bytes stay in the page cache), then the cached pages
    // no one maps; the next read fills new folios.
    ::madvise(const_cast<std::byte*>(data_) + off, len, MADV_DONTNEED);
    ::posix_fadvise(fd, static_cast<off_t>(off), static_cast<off_t>(len), POSIX_FADV_DONTNEED);
  };
  // Can this kernel and filesystem cache the file in 2 MiB folios at all?
  // Re-read one extent through a mapping of its own and look (2 MiB of I/O);
  // re-reading the whole file only pays where it can.
  const size_t probe_at = whole / 2 / kHugePage * kHugePage;
  drop(probe_at, kHugePage);
  bool capable = false;
  if (void* res = ::mmap(nullptr, 2 * kHugePage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      res != MAP_FAILED) {
    const auto at = (reinterpret_cast<uintptr_t>(res) + kHugePage - 1) / kHugePage * kHugePage;
    void* p = ::mmap(reinterpret_cast<void*>(at), kHugePage, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd,
                     static_cast<off_t>(probe_at));
    if (p != MAP_FAILED) {
#ifdef MADV_HUGEPAGE
      ::madvise(p, kHugePage, MADV_HUGEPAGE);
#endif
      populate(static_cast<const std::byte*>(p), kHugePage);
      capable = huge_mapped_bytes(p, kHugePage) >= static_cast<long long>(kHugePage);
    }
    ::munmap(res, 2 * kHugePage);
  }
  if (!capable) {
    ::close(fd);
    populate(data_ + probe_at, kHugePage);
    return done();
  }
  drop(0, size_);
  ::close(fd);
  populate(data_, size_);
  r.refreshed = true;
  const long long after = huge_mapped_bytes(data_, size_);
  r.huge = after < 0 ? 0 : static_cast<size_t>(after);
  return done();
}

void MappedFile::reset() {
  if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

}  // namespace ghostd::runtime
