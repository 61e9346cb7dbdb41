#include <cstdio>

#include "runtime/log.h"

int main() {
  ghostd::runtime::setup_logging("info");
  std::puts("ghostd: not yet wired");
  return 0;
}
