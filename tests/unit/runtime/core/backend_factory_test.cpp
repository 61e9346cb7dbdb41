#include <doctest/doctest.h>

#include "runtime/core/backend.h"

using namespace ghostd::runtime;

TEST_CASE("make_backend picks a backend by name and names what is wrong") {
  auto cpu = make_backend("cpu", 1);
  REQUIRE(cpu.ok());
  CHECK((*cpu)->name().starts_with("cpu"));

  auto any = make_backend("auto", 1);
  REQUIRE(any.ok());  // a GPU when there is one, else the CPU: never an error

  auto bad = make_backend("tpu");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.find("expected cpu, cuda, cuda:N or auto") != std::string::npos);

  // A GPU index no machine has is an error, whether or not CUDA is built.
  auto missing = make_backend("cuda:999");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message.find("cuda:999") != std::string::npos);
}
