// The reference the integer kernels' tests hold an output to: its relative
// error against the exact product of the quantized x row with the decoded
// weight row (only float32 rounding of scales and sums may remain), and
// against the float x row (the rounding of x to 8 bits), each over the sum
// of the products' magnitudes.
#pragma once

#include <cmath>

namespace ghostd::runtime::cpu::testing {

struct Int8Errors {
  double exact = 0, vs_float = 0;
};

inline Int8Errors int8_errors(double got, const double* xq, const float* x, const float* w, int cols) {
  double ref_q = 0, mag_q = 0, ref = 0, mag = 0;
  for (int k = 0; k < cols; ++k) {
    const double wv = w[k];
    ref_q += xq[k] * wv;
    mag_q += std::fabs(xq[k] * wv);
    ref += static_cast<double>(x[k]) * wv;
    mag += std::fabs(static_cast<double>(x[k]) * wv);
  }
  return {std::fabs(got - ref_q) / (mag_q + 1e-30), std::fabs(got - ref) / (mag + 1e-30)};
}

}  // namespace ghostd::runtime::cpu::testing
