#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "tests/unit/skip.h"

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int rc = context.run();
  if (context.shouldExit()) return rc;
  // Every selected test passed but some could not run: a skip, not a pass.
  if (rc == 0 && ghostd::test::skipped_flag()) return 77;
  return rc;
}
