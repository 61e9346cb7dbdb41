// ggml's block formats (see dtype.h) unpacked one block at a time into
// floats. Shared by the reference dequantization (dtype.cpp) and the CPU gemm
// kernels, which unpack one block of a weight row into registers-sized
// scratch and never hold a dequantized tensor. Everything has internal
// linkage: each per-ISA kernel file compiles its own copy for its own
// instruction set (a shared inline copy could run AVX-512 code on an
// AVX2-only CPU).
#pragma once

#include <cstdint>
#include <cstring>

#include "runtime/core/dtype.h"

namespace ghostd::runtime::quant {
namespace {

inline float load_f16(const unsigned char* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

// Sub-block j's 6-bit scale and min of a Q4_K/Q5_K block (ggml's packing:
// j < 4 in the low 6 bits of bytes j and j + 4, the others split across the
// nibbles of bytes j + 4 and the top bits of bytes j - 4 and j).
inline void k_scale_min(int j, const unsigned char* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// All eight (scale, min) pairs of a K-quant block at once, the same values
// as k_scale_min(0..7): three 32-bit words of the 12 bytes give four bytes
// per mask-and-shift, where k_scale_min does one value per call (byte k of a
// word is bits 8k..8k+7: little-endian, as every target).
inline void k_scales_mins(const unsigned char* q, uint8_t sc[8], uint8_t m[8]) {
  uint32_t w0, w1, w2;
  std::memcpy(&w0, q, 4);
  std::memcpy(&w1, q + 4, 4);
  std::memcpy(&w2, q + 8, 4);
  const uint32_t s_lo = w0 & 0x3F3F3F3Fu, m_lo = w1 & 0x3F3F3F3Fu;
  const uint32_t s_hi = (w2 & 0x0F0F0F0Fu) | (((w0 >> 6) & 0x03030303u) << 4);
  const uint32_t m_hi = ((w2 >> 4) & 0x0F0F0F0Fu) | (((w1 >> 6) & 0x03030303u) << 4);
  std::memcpy(sc, &s_lo, 4);
  std::memcpy(sc + 4, &s_hi, 4);
  std::memcpy(m, &m_lo, 4);
  std::memcpy(m + 4, &m_hi, 4);
}

// One block of each type into 32 or 256 floats. The expressions keep ggml's
// rounding steps (d * sc first, then * q, then - m) so results match it bitwise.
inline void dequant_q4_0(const unsigned char* b, float* y) {
  const float d = load_f16(b);
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>((b[2 + j] & 0xF) - 8) * d;
    y[j + 16] = static_cast<float>((b[2 + j] >> 4) - 8) * d;
  }
}

inline void dequant_q4_1(const unsigned char* b, float* y) {
  const float d = load_f16(b);
  const float m = load_f16(b + 2);
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>(b[4 + j] & 0xF) * d + m;
    y[j + 16] = static_cast<float>(b[4 + j] >> 4) * d + m;
  }
}

inline void dequant_q5_0(const unsigned char* b, float* y) {
  const float d = load_f16(b);
  uint32_t qh;
  std::memcpy(&qh, b + 2, 4);
  for (int j = 0; j < 16; ++j) {
    const int h0 = static_cast<int>(((qh >> j) << 4) & 0x10);
    const int h1 = static_cast<int>((qh >> (j + 12)) & 0x10);
    y[j] = static_cast<float>(((b[6 + j] & 0xF) | h0) - 16) * d;
    y[j + 16] = static_cast<float>(((b[6 + j] >> 4) | h1) - 16) * d;
  }
}

inline void dequant_q5_1(const unsigned char* b, float* y) {
  const float d = load_f16(b);
  const float m = load_f16(b + 2);
  uint32_t qh;
  std::memcpy(&qh, b + 4, 4);
  for (int j = 0; j < 16; ++j) {
    const int h0 = static_cast<int>(((qh >> j) << 4) & 0x10);
    const int h1 = static_cast<int>((qh >> (j + 12)) & 0x10);
    y[j] = static_cast<float>((b[8 + j] & 0xF) | h0) * d + m;
    y[j + 16] = static_cast<float>((b[8 + j] >> 4) | h1) * d + m;
  }
}

inline void dequant_q4_k(const unsigned char* b, float* y) {
  const float d = load_f16(b);
  const float dmin = load_f16(b + 2);
  const unsigned char* scales = b + 4;
  const unsigned char* q = b + 16;
  for (int j = 0; j < 8; j += 2, q += 32) {
    int sc = 0, m = 0;
    k_scale_min(j, scales, sc, m);
    const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
    k_scale_min(j + 1, scales, sc, m);
    const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(m);
    for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
  }
}

inline void dequant_q5_k(const unsigned char* b, float* y) {
  const float d = load_f16(b);
  const float dmin = load_f16(b + 2);
  const unsigned char* scales = b + 4;
  const unsigned char* qh = b + 16;
  const unsigned char* ql = b + 48;
  unsigned u1 = 1, u2 = 2;
  for (int j = 0; j < 8; j += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
    int sc = 0, m = 0;
    k_scale_min(j, scales, sc, m);
    const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
    k_scale_min(j + 1, scales, sc, m);
    const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(m);
    for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
  }
}

inline void dequant_q6_k(const unsigned char* b, float* y) {
  const unsigned char* ql = b;
  const unsigned char* qh = b + 128;
  const auto* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = load_f16(b + 208);
  for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
      y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
      y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
      y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
    }
  }
}

// Block of D at b into dtype_block_elems(D) floats at y.
template <DType D>
inline void dequant_block(const unsigned char* b, float* y) {
  if constexpr (D == DType::kQ4_0)
    dequant_q4_0(b, y);
  else if constexpr (D == DType::kQ4_1)
    dequant_q4_1(b, y);
  else if constexpr (D == DType::kQ5_0)
    dequant_q5_0(b, y);
  else if constexpr (D == DType::kQ5_1)
    dequant_q5_1(b, y);
  else if constexpr (D == DType::kQ4_K)
    dequant_q4_k(b, y);
  else if constexpr (D == DType::kQ5_K)
    dequant_q5_k(b, y);
  else if constexpr (D == DType::kQ6_K)
    dequant_q6_k(b, y);
  else
    static_assert(D == DType::kQ4_0, "not a block-quantized type handled here");
}

}  // namespace
}  // namespace ghostd::runtime::quant
