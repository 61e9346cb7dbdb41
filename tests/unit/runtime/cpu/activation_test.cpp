#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "runtime/cpu/gemm.h"

using namespace ghostd::runtime;
using namespace ghostd::runtime::cpu;

namespace {

// x * sigmoid(t): t = x for SiLU, t = 2 sqrt(2 / pi) (x + 0.044715 x^3) for
// tanh-GELU (0.5 x (1 + tanh(t / 2)), which in double loses all its digits to
// cancellation where the result is tiny).
double arg(GluAct act, double x) {
  return act == GluAct::kSilu ? x : 2.0 * 0.7978845608028654 * (x + 0.044715 * x * x * x);
}
double ref(GluAct act, double x) {
  return x / (1.0 + std::exp(-arg(act, x)));
}
// 4 ulp, plus what rounding t in float to a relative 2^-23 costs the
// result: e^-t's relative error grows as |t| (SiLU's t is exact).
double tolerance(GluAct act, float x) {
  return 4.0 + (act == GluAct::kSilu ? 0.0 : 2.0 * std::abs(arg(act, x)));
}

// Distance in float ulps at the reference's magnitude, with an absolute
// floor for results that round to (near) zero.
double ulps(float got, double want) {
  const float w = static_cast<float>(want);  // ilogb(0) is INT_MIN: the floor applies first
  const double ulp = std::abs(w) < 1e-38f ? 1e-38 : std::max(std::ldexp(1.0, std::ilogb(w) - 23), 1e-38);
  return std::abs(got - want) / ulp;
}

bool same_bits(float a, float b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

std::vector<float> inputs() {
  std::vector<float> v = {0.0f,  -0.0f,  1e-30f, -1e-30f, 1e-7f,  -1e-7f,  0.5f,  -0.5f,
                          1.0f,  -1.0f,  10.0f,  -10.0f,  30.0f,  -30.0f,  86.9f, -86.9f,
                          87.5f, -87.5f, 88.5f,  -88.5f,  100.0f, -100.0f, 1e4f,  -1e4f};
  std::mt19937 rng(3);
  std::normal_distribution<float> n(0.0f, 3.0f);
  for (int i = 0; i < 4000; ++i) v.push_back(n(rng));
  for (float x = -20.0f; x <= 20.0f; x += 0.0137f) v.push_back(x);
  return v;
}

}  // namespace

TEST_CASE(
    "vector SiLU and tanh-GELU are within a few ulp of the double formulas, and each element's "
    "bits do not depend on the call") {
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return;
  const std::vector<float> x = inputs();
  const int n = static_cast<int>(x.size());
  std::vector<float> u(x.size()), out(x.size()), gated(x.size()), one(1);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> ud(-2.0f, 2.0f);
  for (float& v : u) v = ud(rng);
  for (GluAct act : {GluAct::kSilu, GluAct::kGelu}) {
    CAPTURE(static_cast<int>(act));
    act_avx2(act, x.data(), nullptr, n, out.data());
    double worst = 0;
    for (int i = 0; i < n; ++i) {
      const double want = ref(act, x[i]);
      CAPTURE(x[i]);
      // Far below zero both tend to -0; the vector form stops at e^88.
      if (x[i] < -80.0f) {
        CHECK(std::abs(out[i]) < 1e-30f);
        continue;
      }
      worst = std::max(worst, ulps(out[i], want) / tolerance(act, x[i]));
      CHECK(ulps(out[i], want) <= tolerance(act, x[i]));
    }
    MESSAGE("worst error: " << worst << " of the tolerance");
    // Gated: act(g) * u, the same product as the ungated result times u.
    act_avx2(act, x.data(), u.data(), n, gated.data());
    for (int i = 0; i < n; ++i) CHECK(same_bits(gated[i], out[i] * u[i]));
    // Each element alone (the tail path) and at every offset and length.
    for (int i = 0; i < 64; ++i) {
      act_avx2(act, x.data() + i, nullptr, 1, one.data());
      CHECK(same_bits(one[0], out[i]));
    }
    for (int off = 0; off < 9; ++off)
      for (int len = 0; len < 27; ++len) {
        std::vector<float> part(static_cast<size_t>(len) + 1, -1.0f);
        act_avx2(act, x.data() + off, u.data() + off, len, part.data());
        for (int i = 0; i < len; ++i) CHECK(same_bits(part[i], gated[off + i]));
        CHECK(part[len] == -1.0f);  // nothing written past n
      }
    // The scalar version: SiLU as closely; tanh-GELU's 1 + tanh cancels where
    // the result is small, so within float rounding of x there.
    act_generic(act, x.data(), nullptr, n, gated.data());
    for (int i = 0; i < n; ++i) {
      if (x[i] < -80.0f) continue;
      CAPTURE(x[i]);
      const double want = ref(act, x[i]);
      if (act == GluAct::kSilu)
        CHECK(ulps(gated[i], want) <= 4.0);
      else
        CHECK(std::abs(gated[i] - want) <= 0x1p-23 * std::abs(x[i]) + 4 * std::abs(want) * 0x1p-23);
    }
  }
  const float nan = std::numeric_limits<float>::quiet_NaN();
  act_avx2(GluAct::kSilu, &nan, nullptr, 1, one.data());
  CHECK(std::isnan(one[0]));
  act_avx2(GluAct::kGelu, &nan, nullptr, 1, one.data());
  CHECK(std::isnan(one[0]));
}

TEST_CASE("an attention span's softmax pieces: the max exactly, each exponential within a few ulp, the sum close") {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 4.0f);
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  for (int count : {1, 3, 7, 8, 9, 16, 37, 255, 256}) {
    CAPTURE(count);
    std::vector<float> s(static_cast<size_t>(count) + 1);
    for (float& v : s) v = nd(rng);
    const float scale = 0.125f;
    for (SpanSoftmaxFn f : {span_softmax_generic, avx2 ? span_softmax_avx2 : span_softmax_generic}) {
      std::vector<float> got = s;
      float mx = 0, sum = 0;
      f(got.data(), count, scale, &mx, &sum);
      float want_max = -INFINITY;
      for (int i = 0; i < count; ++i) want_max = std::max(want_max, s[i] * scale);
      CHECK(mx == want_max);
      double want_sum = 0;
      for (int i = 0; i < count; ++i) {
        const double e = std::exp(static_cast<double>(s[i] * scale) - mx);
        want_sum += e;
        CHECK(ulps(got[i], e) <= 4.0);
      }
      CHECK(got[count] == s[count]);  // nothing written past count
      CHECK(std::abs(sum - want_sum) <= 1e-6 * want_sum);
    }
  }
}
