// Element types of model weights and their scalar conversions. The scalar
// conversions are inline because every backend's reference path calls them
// per element.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace ghostd::runtime {

// kQ8_0 is ggml's Q8_0: blocks of 32 values, each an f16 scale followed by
// 32 int8 quants (34 bytes); value = scale * quant.
enum class DType { kF32, kF16, kBF16, kQ8_0 };

inline constexpr int64_t kQ8_0BlockSize = 32;
inline constexpr size_t kQ8_0BlockBytes = 34;

const char* dtype_name(DType dtype);

// Bytes taken by n_elements values. For kQ8_0, n_elements must be a multiple
// of kQ8_0BlockSize (check with dtype_count_ok first on untrusted input).
size_t dtype_bytes(DType dtype, int64_t n_elements);

// True when n_elements can be stored as dtype (Q8_0 needs whole blocks).
inline bool dtype_count_ok(DType dtype, int64_t n_elements) {
  return n_elements >= 0 && (dtype != DType::kQ8_0 || n_elements % kQ8_0BlockSize == 0);
}

inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float f32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline float bf16_to_f32(uint16_t h) { return f32_from_bits(static_cast<uint32_t>(h) << 16); }

// Round to nearest even; NaN stays a (quiet) NaN with its sign.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | (mant << 13));  // inf / NaN
  if (exp != 0) return f32_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
  if (mant == 0) return f32_from_bits(sign);  // signed zero
  // Subnormal: shift the mantissa up until its leading one becomes implicit.
  int e = -1;
  do {
    mant <<= 1;
    ++e;
  } while ((mant & 0x400u) == 0);
  return f32_from_bits(sign | (static_cast<uint32_t>(112 - e) << 23) | ((mant & 0x3ffu) << 13));
}

// Round to nearest even, overflow to inf, subnormals kept, NaN kept quiet.
inline uint16_t f32_to_f16(float f) {
  const uint32_t u = f32_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65536
  if (abs < 0x38800000u) {
    // f16 subnormal (or zero): value = m * 2^-24, round m to nearest even.
    if (abs < 0x33000000u) return sign;  // below half the smallest subnormal
    const uint32_t exp = abs >> 23;
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - exp;  // 14..24
    uint32_t m = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (m & 1u))) ++m;
    return static_cast<uint16_t>(sign | m);
  }
  uint32_t r = abs - 0x38000000u;  // rebias exponent 127 -> 15 (in place)
  r += 0xfffu + ((r >> 13) & 1u);
  return static_cast<uint16_t>(sign | (r >> 13));
}

// Converts n values of dtype at src to f32. For kQ8_0, n is a multiple of 32.
void dequantize_row(DType dtype, const void* src, float* dst, int64_t n);

// ggml's Q8_0 quantization: per block scale = max|x| / 127, quant =
// round(x / scale). n must be a multiple of 32.
void quantize_row_q8_0(const float* src, void* dst, int64_t n);

}  // namespace ghostd::runtime
