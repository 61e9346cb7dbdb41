#include "runtime/core/dtype.h"

#include "runtime/core/quant_blocks.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>

namespace ghostd::runtime {

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kQ8_0: return "Q8_0";
    case DType::kQ4_0: return "Q4_0";
    case DType::kQ4_1: return "Q4_1";
    case DType::kQ5_0: return "Q5_0";
    case DType::kQ5_1: return "Q5_1";
    case DType::kQ4_K: return "Q4_K";
    case DType::kQ5_K: return "Q5_K";
    case DType::kQ6_K: return "Q6_K";
  }
  return "?";
}

size_t dtype_bytes(DType dtype, int64_t n_elements) {
  assert(dtype_count_ok(dtype, n_elements));
  return static_cast<size_t>(n_elements / dtype_block_elems(dtype)) * dtype_block_bytes(dtype);
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
        const float scale = quant::load_f16(block);
        const auto* q = reinterpret_cast<const int8_t*>(block + 2);
        for (int64_t i = 0; i < kQ8_0BlockSize; ++i) {
          dst[b * kQ8_0BlockSize + i] = scale * static_cast<float>(q[i]);
        }
      }
      return;
    default:
      break;
  }
  void (*block_fn)(const unsigned char*, float*) = nullptr;
  switch (dtype) {
    case DType::kQ4_0: block_fn = quant::dequant_block<DType::kQ4_0>; break;
    case DType::kQ4_1: block_fn = quant::dequant_block<DType::kQ4_1>; break;
    case DType::kQ5_0: block_fn = quant::dequant_block<DType::kQ5_0>; break;
    case DType::kQ5_1: block_fn = quant::dequant_block<DType::kQ5_1>; break;
    case DType::kQ4_K: block_fn = quant::dequant_block<DType::kQ4_K>; break;
    case DType::kQ5_K: block_fn = quant::dequant_block<DType::kQ5_K>; break;
    case DType::kQ6_K: block_fn = quant::dequant_block<DType::kQ6_K>; break;
    default: return;
  }
  const int64_t be = dtype_block_elems(dtype);
  const size_t bb = dtype_block_bytes(dtype);
  assert(n % be == 0);
  for (int64_t b = 0; b < n / be; ++b) block_fn(bytes + static_cast<size_t>(b) * bb, dst + b * be);
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
