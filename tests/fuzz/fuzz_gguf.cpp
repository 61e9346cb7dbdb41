// Fuzzes the GGUF reader, the config reader and the WeightStore on top of it:
// any input must give a value or an Error, never a crash or an out-of-bounds
// read.
#include <cstddef>
#include <cstdint>

#include "runtime/model/gguf.h"
#include "runtime/model/model_config.h"
#include "runtime/model/weights.h"
#include "tests/fuzz/fuzz_memfile.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ghostd::runtime;
  ghostd::fuzz::MemFile file(data, size);
  auto g = GgufFile::open(file.path());
  if (!g.ok()) return 0;
  unsigned sum = 0;
  for (const auto& t : g->tensors()) {
    for (size_t i = 0; i < t.nbytes; ++i) sum += static_cast<unsigned>(t.data[i]);
  }
  for (const auto& key : g->keys()) {
    (void)g->get_string(key);
    (void)g->get_int(key);
    (void)g->get_float(key);
    (void)g->get_string_array(key);
    (void)g->get_int_array(key);
  }
  if (auto c = config_from_gguf(*g); c.ok() && c->head_dim <= 4096) (void)rope_inv_freq(*c);
  (void)WeightStore::open(file.path());
  return static_cast<int>(sum & 0);
}
