#include "runtime/core/mapped_file.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <span>
#include <utility>
#include <vector>

#include "tests/unit/runtime/model_file_writers.h"

using namespace ghostd::runtime;
using ghostd::test::TempDir;

TEST_CASE("MappedFile maps a file's bytes read-only") {
  TempDir dir;
  ghostd::test::write_file(dir / "a.bin", {1, 2, 3, 250});
  auto f = MappedFile::open(dir / "a.bin");
  REQUIRE(f.ok());
  REQUIRE(f->bytes().size() == 4);
  CHECK(f->bytes()[3] == std::byte{250});
  CHECK(f->path() == dir / "a.bin");

  // Moving keeps the same mapping; the moved-from object is empty.
  const std::byte* data = f->bytes().data();
  MappedFile g = std::move(f).value();
  CHECK(g.bytes().data() == data);
  MappedFile h = std::move(g);
  CHECK(h.bytes().size() == 4);
  CHECK(g.bytes().empty());  // NOLINT(bugprone-use-after-move): documented state
}

TEST_CASE("MappedFile accepts an empty file") {
  TempDir dir;
  ghostd::test::write_file(dir / "empty", {});
  auto f = MappedFile::open(dir / "empty");
  REQUIRE(f.ok());
  CHECK(f->bytes().empty());
}

TEST_CASE("MappedFile errors name the path") {
  TempDir dir;
  auto missing = MappedFile::open(dir / "nope.bin");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message.find("nope.bin") != std::string::npos);
  CHECK(missing.error().message.find("No such file") != std::string::npos);
  auto directory = MappedFile::open(dir.path());
  REQUIRE_FALSE(directory.ok());
  CHECK(directory.error().message.find("not a regular file") != std::string::npos);
}

namespace {

// 10 MiB + 123 bytes of a position-dependent pattern, written 4 KiB at a
// time (so the page cache holds it in small folios, as after a download) and
// back to disk (fsync), so its cached pages are clean and settle() may drop them.
std::filesystem::path write_synced(const std::filesystem::path& path, uint8_t seed) {
  std::vector<uint8_t> bytes((size_t{10} << 20) + 123);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>((i * 131 + i / 4099 + seed) & 0xff);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  for (size_t at = 0; at < bytes.size(); at += 4096) {
    const size_t n = std::min<size_t>(4096, bytes.size() - at);
    REQUIRE(::write(fd, bytes.data() + at, n) == static_cast<ssize_t>(n));
  }
  REQUIRE(::fsync(fd) == 0);
  ::close(fd);
  return path;
}

bool has_pattern(std::span<const std::byte> b, uint8_t seed) {
  for (size_t i = 0; i < b.size(); i += 997)
    if (b[i] != static_cast<std::byte>((i * 131 + i / 4099 + seed) & 0xff)) return false;
  return b.back() == static_cast<std::byte>(((b.size() - 1) * 131 + (b.size() - 1) / 4099 + seed) & 0xff);
}

}  // namespace

TEST_CASE("MappedFile maps files of 2 MiB or more on a 2 MiB boundary") {
  TempDir dir;
  auto f = MappedFile::open(write_synced(dir / "w.bin", 7));
  REQUIRE(f.ok());
  CHECK(reinterpret_cast<uintptr_t>(f->bytes().data()) % (size_t{2} << 20) == 0);
  CHECK(has_pattern(f->bytes(), 7));
  // The mapping is a region of /proc/self/smaps, whatever it holds.
  const long long huge = huge_mapped_bytes(f->bytes().data(), f->bytes().size());
  CHECK(huge >= 0);
  CHECK(huge <= static_cast<long long>(f->bytes().size()));
  CHECK(huge_mapped_bytes(nullptr, 1) == -1);  // page 0 is never mapped
}

TEST_CASE("MappedFile::settle reads the file in and keeps its bytes and address") {
  TempDir dir;
  auto f = MappedFile::open(write_synced(dir / "w.bin", 3));
  REQUIRE(f.ok());
  const std::byte* at = f->bytes().data();
  const PageCacheReport r = f->settle();
  CHECK(r.bytes == f->bytes().size());
  CHECK(f->bytes().data() == at);
  CHECK(has_pattern(f->bytes(), 3));
  CHECK(r.huge <= r.bytes);
  CHECK(r.seconds >= 0);
  // Where the kernel re-read the page cache in 2 MiB folios, it did better.
  if (r.refreshed) CHECK(r.huge > r.huge_before);
  f->settle();
  CHECK(has_pattern(f->bytes(), 3));

  // Small files are left alone.
  ghostd::test::write_file(dir / "small", {1, 2, 3});
  auto s = MappedFile::open(dir / "small");
  REQUIRE(s.ok());
  CHECK_FALSE(s->settle().measured);
}

TEST_CASE("MappedFile::settle drops no pages of a file that replaced the mapped one") {
  TempDir dir;
  auto f = MappedFile::open(write_synced(dir / "w.bin", 5));
  REQUIRE(f.ok());
  // The path now names a new file (a model updated in place by rename).
  write_synced(dir / "new.bin", 9);
  std::filesystem::rename(dir / "new.bin", dir / "w.bin");
  const PageCacheReport r = f->settle();
  CHECK_FALSE(r.refreshed);
  CHECK(has_pattern(f->bytes(), 5));  // still the old file's bytes
}
