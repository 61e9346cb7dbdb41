// A test that cannot run here (no GPU, CUDA not compiled) says so and makes
// the run exit 77, which ctest reports as skipped rather than passed.
#pragma once

#include <doctest/doctest.h>

#include <atomic>
#include <string>

namespace ghostd::test {

inline std::atomic<bool>& skipped_flag() {
  static std::atomic<bool> flag{false};
  return flag;
}

inline void skip(const std::string& why) {
  MESSAGE("skipped: " << why);
  skipped_flag() = true;
}

}  // namespace ghostd::test
