// Element types of model weights and their scalar conversions. The scalar
// conversions are inline because every backend's reference path calls them
// per element.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace ghostd::runtime {

// The quantized types are ggml's block formats, byte for byte as GGUF stores
// them (ggml-common.h): a row is a sequence of blocks, each holding its own
// scales, so a weight row can be used without converting the tensor.
// - kQ8_0: 32 values: f16 d, 32 int8 q; value = d * q (34 bytes).
// - kQ4_0: 32 values: f16 d, 16 bytes of nibbles; value = d * (q - 8) (18).
// - kQ4_1: 32 values: f16 d, f16 m, nibbles; value = d * q + m (20).
// - kQ5_0: 32 values: f16 d, 4 bytes of fifth bits, nibbles;
//   value = d * (q - 16) (22).
// - kQ5_1: 32 values: f16 d, f16 m, fifth bits, nibbles; d * q + m (24).
// - kQ4_K: 256 values in 8 sub-blocks of 32: f16 d, f16 dmin, 12 bytes of
//   6-bit sub-block scales and mins, 128 bytes of nibbles;
//   value = d * sc * q - dmin * m (144).
// - kQ5_K: as Q4_K plus 32 bytes of fifth bits (176).
// - kQ6_K: 256 values in 16 sub-blocks of 16: 128 bytes of low nibbles, 64
//   of high 2-bit pairs, 16 int8 scales, f16 d; value = d * sc * (q - 32) (210).
enum class DType { kF32, kF16, kBF16, kQ8_0, kQ4_0, kQ4_1, kQ5_0, kQ5_1, kQ4_K, kQ5_K, kQ6_K };

inline constexpr int64_t kQ8_0BlockSize = 32;
inline constexpr size_t kQ8_0BlockBytes = 34;

const char* dtype_name(DType dtype);

// Values per block (1 for F32/F16/BF16) and bytes per block.
inline constexpr int64_t dtype_block_elems(DType dtype) {
  switch (dtype) {
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16: return 1;
    case DType::kQ8_0:
    case DType::kQ4_0:
    case DType::kQ4_1:
    case DType::kQ5_0:
    case DType::kQ5_1: return 32;
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K: return 256;
  }
  return 1;
}

inline constexpr size_t dtype_block_bytes(DType dtype) {
  switch (dtype) {
    case DType::kF32: return 4;
    case DType::kF16:
    case DType::kBF16: return 2;
    case DType::kQ8_0: return 34;
    case DType::kQ4_0: return 18;
    case DType::kQ4_1: return 20;
    case DType::kQ5_0: return 22;
    case DType::kQ5_1: return 24;
    case DType::kQ4_K: return 144;
    case DType::kQ5_K: return 176;
    case DType::kQ6_K: return 210;
  }
  return 0;
}

inline constexpr bool dtype_is_quantized(DType dtype) { return dtype_block_elems(dtype) > 1; }

// Bytes taken by n_elements values. For a quantized dtype, n_elements must be
// a multiple of its block size (check with dtype_count_ok first on untrusted
// input).
size_t dtype_bytes(DType dtype, int64_t n_elements);

// True when n_elements can be stored as dtype (quantized types need whole blocks).
inline bool dtype_count_ok(DType dtype, int64_t n_elements) {
  return n_elements >= 0 && n_elements % dtype_block_elems(dtype) == 0;
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

// Converts n values of dtype at src to f32, bit for bit as ggml's reference
// dequantization does. For a quantized dtype, n is a multiple of its block size.
void dequantize_row(DType dtype, const void* src, float* dst, int64_t n);

// ggml's Q8_0 quantization: per block scale = max|x| / 127, quant =
// round(x / scale). n must be a multiple of 32.
void quantize_row_q8_0(const float* src, void* dst, int64_t n);

}  // namespace ghostd::runtime
