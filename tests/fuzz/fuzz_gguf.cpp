// Fuzzes the GGUF reader, the config reader and the WeightStore on top of it:
// any input must give a value or an Error, never a crash or an out-of-bounds
// read.
#include <cstddef>
#include <cstdint>
#include <vector>

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
  std::vector<float> row;
  for (const auto& t : g->tensors()) {
    for (size_t i = 0; i < t.nbytes; ++i) sum += static_cast<unsigned>(t.data[i]);
    // The block decoders (Q4_0 .. Q6_K) on whatever bytes the file holds: the
    // first row, which the parser promised is whole blocks inside the file.
    if (t.shape.empty()) continue;
    const int64_t cols = t.shape.back();
    if (cols <= 0 || cols > (1 << 16) || !dtype_count_ok(t.dtype, cols) || dtype_bytes(t.dtype, cols) > t.nbytes) continue;
    row.resize(static_cast<size_t>(cols));
    dequantize_row(t.dtype, t.data, row.data(), cols);
    for (float v : row) sum += static_cast<unsigned>(v != v);
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
