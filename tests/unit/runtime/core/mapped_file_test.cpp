#include "runtime/core/mapped_file.h"

#include <doctest/doctest.h>

#include <utility>

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
