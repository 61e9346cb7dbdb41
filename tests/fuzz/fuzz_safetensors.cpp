// Fuzzes the safetensors parser: any input must give views inside the file
// or an Error.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "runtime/model/safetensors.h"
#include "tests/fuzz/fuzz_memfile.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ghostd::runtime;
  ghostd::fuzz::MemFile file(data, size);
  auto mapped = MappedFile::open(file.path());
  if (!mapped.ok()) return 0;
  auto views = parse_safetensors(*mapped);
  if (!views.ok()) return 0;
  const auto bytes = mapped->bytes();
  for (const auto& v : *views) {
    if (v.nbytes != 0 && (v.data < bytes.data() || v.data + v.nbytes > bytes.data() + bytes.size())) std::abort();
  }
  return 0;
}
