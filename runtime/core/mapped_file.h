// Read-only memory mapping of a whole file, so weights are used in place.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>

#include "runtime/core/result.h"

namespace ghostd::runtime {

// RAII owner of a read-only mapping; move-only. An empty file maps to an
// empty span. The mapped address does not change when the object moves.
// Thread-safety: immutable after open; bytes() may be read from any thread.
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

 private:
  MappedFile() = default;
  void reset();

  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace ghostd::runtime
