#include "runtime/core/dtype.h"

#include <algorithm>
#include <cassert>
#include <cmath>

namespace ghostd::runtime {

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kQ8_0: return "Q8_0";
  }
  return "?";
}

size_t dtype_bytes(DType dtype, int64_t n_elements) {
  assert(dtype_count_ok(dtype, n_elements));
  const auto n = static_cast<size_t>(n_elements);
  switch (dtype) {
    case DType::kF32: return n * 4;
    case DType::kF16:
    case DType::kBF16: return n * 2;
    case DType::kQ8_0: return n / kQ8_0BlockSize * kQ8_0BlockBytes;
  }
  return 0;
}

void dequantize_row(DType dtype, const void* src, float* dst, int64_t n) {
  const auto* bytes = static_cast<const unsigned char*>(src);
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case DType::kF16:
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, bytes + 2 * i, 2);  // src may be only byte-aligned
        dst[i] = dtype == DType::kF16 ? f16_to_f32(h) : bf16_to_f32(h);
      }
      return;
    case DType::kQ8_0:
      assert(n % kQ8_0BlockSize == 0);
      for (int64_t b = 0; b < n / kQ8_0BlockSize; ++b) {
        const unsigned char* block = bytes + b * kQ8_0BlockBytes;
        uint16_t h;
        std::memcpy(&h, block, 2);
        const float scale = f16_to_f32(h);
        const auto* q = reinterpret_cast<const int8_t*>(block + 2);
        for (int64_t i = 0; i < kQ8_0BlockSize; ++i) {
          dst[b * kQ8_0BlockSize + i] = scale * static_cast<float>(q[i]);
        }
      }
      return;
  }
}

void quantize_row_q8_0(const float* src, void* dst, int64_t n) {
  assert(n % kQ8_0BlockSize == 0);
  auto* out = static_cast<unsigned char*>(dst);
  for (int64_t b = 0; b < n / kQ8_0BlockSize; ++b) {
    const float* x = src + b * kQ8_0BlockSize;
    float amax = 0.0f;
    for (int64_t i = 0; i < kQ8_0BlockSize; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float scale = amax / 127.0f;
    const float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
    unsigned char* block = out + b * kQ8_0BlockBytes;
    const uint16_t h = f32_to_f16(scale);
    std::memcpy(block, &h, 2);
    for (int64_t i = 0; i < kQ8_0BlockSize; ++i) {
      const auto q = static_cast<int8_t>(std::lround(x[i] * inv));
      std::memcpy(block + 2 + i, &q, 1);
    }
  }
}

}  // namespace ghostd::runtime
