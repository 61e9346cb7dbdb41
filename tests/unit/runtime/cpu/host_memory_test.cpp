#include "runtime/cpu/host_memory.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "runtime/cpu/thread_pool.h"

using ghostd::runtime::cpu::HostRegion;
using ghostd::runtime::cpu::parallel_copy;

TEST_CASE("HostRegion: 2 MiB aligned, zeroed, writable, movable") {
  const size_t bytes = 3 * HostRegion::kHugePage + 12345;
  HostRegion r(bytes);
  REQUIRE(r.data() != nullptr);
  CHECK(r.size() == bytes);
  CHECK(reinterpret_cast<uintptr_t>(r.data()) % HostRegion::kHugePage == 0);
  auto* p = static_cast<unsigned char*>(r.data());
  CHECK(p[0] == 0);
  CHECK(p[bytes - 1] == 0);
  p[bytes - 1] = 7;
  HostRegion moved(std::move(r));
  CHECK(r.data() == nullptr);
  CHECK(r.size() == 0);
  REQUIRE(moved.data() == p);
  CHECK(static_cast<unsigned char*>(moved.data())[bytes - 1] == 7);
  HostRegion assigned;
  assigned = std::move(moved);
  CHECK(assigned.data() == p);
  CHECK(HostRegion(0).data() == nullptr);
}

TEST_CASE("parallel_copy: every byte, for sizes that do not split evenly") {
  for (size_t bytes : {size_t{1}, size_t{4097}, (size_t{40} << 20) + 13, (size_t{70} << 20) + 1}) {
    CAPTURE(bytes);
    std::vector<unsigned char> src(bytes);
    for (size_t i = 0; i < bytes; ++i) src[i] = static_cast<unsigned char>(i * 2654435761u >> 13);
    for (int threads : {1, 2, 3}) {
      CAPTURE(threads);
      ghostd::runtime::cpu::ThreadPool pool(threads);
      HostRegion dst(bytes);
      REQUIRE(dst.data() != nullptr);
      parallel_copy(dst.data(), src.data(), bytes, pool);
      CHECK(std::memcmp(dst.data(), src.data(), bytes) == 0);
    }
  }
}
