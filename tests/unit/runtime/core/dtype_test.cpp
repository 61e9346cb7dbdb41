#include "runtime/core/dtype.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ios>
#include <string>
#include <limits>
#include <vector>

using namespace ghostd::runtime;

namespace {

struct Conversion {
  uint32_t f32;
  uint16_t f16, bf16;
};

// Reference bit patterns from torch 1.13: t.to(float16) / t.to(bfloat16).
constexpr Conversion kTorch[] = {
    {0x00000000, 0x0000, 0x0000},  // 0.0
    {0x80000000, 0x8000, 0x8000},  // -0.0
    {0x3f800000, 0x3c00, 0x3f80},  // 1.0
    {0xc0200000, 0xc100, 0xc020},  // -2.5
    {0x40490fdb, 0x4248, 0x4049},  // pi
    {0x477fe000, 0x7bff, 0x4780},  // 65504 (f16 max)
    {0x477ff000, 0x7c00, 0x4780},  // 65520: tie rounds to inf
    {0x477fef00, 0x7bff, 0x4780},  // 65519
    {0x322bcc77, 0x0000, 0x322c},  // 1e-08: underflows f16
    {0x3380d959, 0x0001, 0x3381},  // 6e-08: smallest f16 subnormal
    {0x33000000, 0x0000, 0x3300},  // 2^-25: tie rounds to zero
    {0x337ffae5, 0x0001, 0x3380},  // 5.96e-08
    {0x38800000, 0x0400, 0x3880},  // 2^-14: smallest f16 normal
    {0x387fda40, 0x03ff, 0x3880},  // 6.1e-05: largest subnormal
    {0x3727c5ac, 0x00a8, 0x3728},  // 1e-05
    {0x3dcccccd, 0x2e66, 0x3dcd},  // 0.1
    {0x3f803000, 0x3c02, 0x3f80},  // 1 + 3*2^-11: tie rounds up to even
    {0x3f801000, 0x3c00, 0x3f80},  // 1 + 2^-11: tie rounds down to even
    {0x7149f2ca, 0x7c00, 0x714a},  // 1e+30
    {0x8da24260, 0x8000, 0x8da2},  // -1e-30
    {0x7f800000, 0x7c00, 0x7f80},  // inf
    {0xff800000, 0xfc00, 0xff80},  // -inf
    {0x7f7f0000, 0x7c00, 0x7f7f},  // bf16 max
    {0x3f808000, 0x3c04, 0x3f80},  // bf16 tie rounds down to even
    {0x3f818000, 0x3c0c, 0x3f82},  // bf16 tie rounds up to even
    {0x3f810000, 0x3c08, 0x3f81},  // 1.0078125
};

}  // namespace

TEST_CASE("f32 to f16 and bf16 match torch's rounding") {
  for (const auto& c : kTorch) {
    CAPTURE(c.f32);
    const float f = f32_from_bits(c.f32);
    CHECK(f32_to_f16(f) == c.f16);
    CHECK(f32_to_bf16(f) == c.bf16);
  }
}

TEST_CASE("every f16 and bf16 value survives a round trip through f32") {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const auto bits = static_cast<uint16_t>(h);
    const float f = f16_to_f32(bits);
    if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0) {
      CHECK(std::isnan(f));
      CHECK(std::isnan(f16_to_f32(f32_to_f16(f))));
    } else if (f32_to_f16(f) != bits) {
      FAIL("f16 0x" << std::hex << h << " does not round-trip");
    }
    const float g = bf16_to_f32(bits);
    if (std::isnan(g)) {
      CHECK(std::isnan(bf16_to_f32(f32_to_bf16(g))));
    } else if (f32_to_bf16(g) != bits) {
      FAIL("bf16 0x" << std::hex << h << " does not round-trip");
    }
  }
  CHECK(f16_to_f32(0x0001) == std::ldexp(1.0f, -24));
  CHECK(f16_to_f32(0x7bff) == 65504.0f);
  CHECK(f16_to_f32(0xfc00) == -std::numeric_limits<float>::infinity());
}

TEST_CASE("NaN stays NaN, sign kept") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(nan))));
  CHECK(std::isnan(f16_to_f32(f32_to_f16(nan))));
  // A NaN whose payload sits only in the low bits must not become inf.
  const float low_payload = f32_from_bits(0x7f800001u);
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(low_payload))));
  CHECK(std::isnan(f16_to_f32(f32_to_f16(low_payload))));
  CHECK((f32_to_bf16(-nan) & 0x8000u) != 0);
}

TEST_CASE("dtype sizes and names") {
  struct Case {
    DType dtype;
    int64_t n;
    size_t bytes;
    const char* name;
  };
  const Case cases[] = {{DType::kF32, 10, 40, "F32"},
                        {DType::kF16, 10, 20, "F16"},
                        {DType::kBF16, 3, 6, "BF16"},
                        {DType::kQ8_0, 64, 68, "Q8_0"},
                        {DType::kQ8_0, 0, 0, "Q8_0"}};
  for (const auto& c : cases) {
    CAPTURE(c.name);
    CHECK(dtype_bytes(c.dtype, c.n) == c.bytes);
    CHECK(std::string(dtype_name(c.dtype)) == c.name);
  }
  CHECK(dtype_count_ok(DType::kQ8_0, 64));
  CHECK_FALSE(dtype_count_ok(DType::kQ8_0, 33));
  CHECK(dtype_count_ok(DType::kF16, 33));
}

TEST_CASE("dequantize_row for F32, F16 and BF16") {
  const std::vector<float> values = {0.0f, 1.0f, -2.5f, 0.1f, 1e-5f, 65504.0f};
  std::vector<uint16_t> f16, bf16;
  for (float v : values) {
    f16.push_back(f32_to_f16(v));
    bf16.push_back(f32_to_bf16(v));
  }
  std::vector<float> out(values.size());
  dequantize_row(DType::kF32, values.data(), out.data(), 6);
  CHECK(out == values);
  dequantize_row(DType::kF16, f16.data(), out.data(), 6);
  for (size_t i = 0; i < values.size(); ++i) CHECK(out[i] == f16_to_f32(f16[i]));
  dequantize_row(DType::kBF16, bf16.data(), out.data(), 6);
  for (size_t i = 0; i < values.size(); ++i) CHECK(out[i] == bf16_to_f32(bf16[i]));
}

TEST_CASE("Q8_0 quantization: layout, exact values and error bound") {
  std::vector<float> x(64);
  for (int i = 0; i < 64; ++i) x[i] = std::sin(0.37f * static_cast<float>(i)) * (i < 32 ? 1.0f : 0.01f);
  x[5] = -1.27f;  // block 0's amax: scale 0.01 exactly in f32
  std::vector<uint8_t> q(dtype_bytes(DType::kQ8_0, 64));
  quantize_row_q8_0(x.data(), q.data(), 64);
  uint16_t scale_bits;
  std::memcpy(&scale_bits, q.data(), 2);
  CHECK(scale_bits == f32_to_f16(1.27f / 127.0f));
  CHECK(static_cast<int8_t>(q[2 + 5]) == -127);  // the amax element maps to -127
  std::vector<float> y(64);
  dequantize_row(DType::kQ8_0, q.data(), y.data(), 64);
  for (int b = 0; b < 2; ++b) {
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[b * 32 + i]));
    for (int i = 0; i < 32; ++i) {
      // Half a quantization step plus the f16 rounding of the scale.
      CHECK(std::fabs(y[b * 32 + i] - x[b * 32 + i]) <= amax / 127.0f * 0.5f + amax * 1e-3f);
    }
  }
  // Block of zeros: scale 0, quants 0.
  std::vector<float> zeros(32, 0.0f);
  std::vector<uint8_t> qz(34, 0xff);
  quantize_row_q8_0(zeros.data(), qz.data(), 32);
  for (uint8_t byte : qz) CHECK(byte == 0);
}
