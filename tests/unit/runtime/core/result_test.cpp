#include "runtime/core/result.h"

#include <doctest/doctest.h>

using ghostd::runtime::Error;
using ghostd::runtime::Result;
using ghostd::runtime::Status;

namespace {
Result<int> parse_positive(int v) {
  if (v <= 0) return Error{"expected a positive number, got " + std::to_string(v)};
  return v;
}
Status check_twice(int v) {
  GHOSTD_TRY_STATUS(parse_positive(v));
  return {};
}
}  // namespace

TEST_CASE("Result carries a value or an error") {
  auto ok = parse_positive(3);
  REQUIRE(ok.ok());
  CHECK(*ok == 3);
  auto bad = parse_positive(-1);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message == "expected a positive number, got -1");
  CHECK(check_twice(2).ok());
  CHECK(check_twice(0).message() == "expected a positive number, got 0");
}
