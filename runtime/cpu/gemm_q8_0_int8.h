// Q8_0 products in integers (the default; GHOSTD_CPU_BLOCK32=float turns it
// off, for the other 32-value block types too: gemm_q4q5_int8.h): each x row is rounded to 8 bits per 32 values, as llama.cpp rounds
// activations for Q8_0 weights (ggml's Q8_0: one float scale per block), so
// x's rounding is the weights' own, and each 32-value block's 32 products are
// summed in integers (exact) before the two scales are applied. The float path
// spends four vector operations on each 16 weights (widen, convert, scale,
// FMA) and is compute-bound at batch 1 on one core; this one reads the quants
// as bytes. Results stay batch-invariant (each row is quantized alone, and
// each output's operations are those of a one-row call).
//
// Every build gives the same bits (so a model answers alike on AVX2 and
// AVX-512 machines): the integer lanes are sums of the same 4 products
// (maddubs + madd, or VNNI's dpbusd with a per-lane offset correction), and
// the float sums are kept per block parity (two 8-lane accumulators, or one
// 16-lane one whose halves are those two), added at the end. The tile
// driver, shared with the 4- and 5-bit types, is gemm_block32_q8
// (gemm_q4q5_int8.h).
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "runtime/cpu/gemm.h"
#include "runtime/cpu/gemm_tiling.h"

namespace ghostd::runtime::cpu {
namespace {

// Rows [r_begin, r_end) of x into xq's per-32 form (sized by Q8Rows::resize):
// q = round-to-even(x * 127 / amax), d = amax / 127, and c4 = -128 times
// each 4 quants' sum (VNNI's offset correction, one int32 per dpbusd lane).
inline void quantize_rows_q8_32(const float* x, int r_begin, int r_end, Q8Rows& out) {
  const int cols = out.cols, blocks = cols / 32;
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  const __m256i k128 = _mm256_set1_epi8(static_cast<char>(0x80)), ones = _mm256_set1_epi16(1);
  for (int r = r_begin; r < r_end; ++r) {
    for (int b = 0; b < blocks; ++b) {
      const float* xb = x + static_cast<int64_t>(r) * cols + 32 * b;
      const __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8), v2 = _mm256_loadu_ps(xb + 16),
                   v3 = _mm256_loadu_ps(xb + 24);
      __m256 mx = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
      mx = _mm256_max_ps(mx, _mm256_permute2f128_ps(mx, mx, 1));
      mx = _mm256_max_ps(mx, _mm256_shuffle_ps(mx, mx, 0x4E));
      mx = _mm256_max_ps(mx, _mm256_shuffle_ps(mx, mx, 0xB1));
      const float amax = _mm256_cvtss_f32(mx);
      const float id = amax > 0 ? 127.0f / amax : 0.0f;
      out.d32[static_cast<size_t>(r) * blocks + b] = amax / 127.0f;
      const __m256 vid = _mm256_set1_ps(id);
      // Round to nearest even (the MXCSR default), |q| <= 127.
      const __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(v0, vid)), c = _mm256_cvtps_epi32(_mm256_mul_ps(v1, vid)),
                    e = _mm256_cvtps_epi32(_mm256_mul_ps(v2, vid)), f = _mm256_cvtps_epi32(_mm256_mul_ps(v3, vid));
      const __m256i q = _mm256_permutevar8x32_epi32(
          _mm256_packs_epi16(_mm256_packs_epi32(a, c), _mm256_packs_epi32(e, f)), order);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.q32.data() + static_cast<int64_t>(r) * cols + 32 * b), q);
      // 128 * (q0 + q1) per byte pair fits int16 (|.| <= 32512), then the pairs' pairs.
      const __m256i s4 = _mm256_madd_epi16(_mm256_maddubs_epi16(k128, q), ones);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.c4.data() + static_cast<int64_t>(r) * (cols / 4) + 8 * b),
                          _mm256_sub_epi32(_mm256_setzero_si256(), s4));
    }
  }
}

struct Q8View32 {
  const int8_t* q;
  const float* d;
  const int32_t* c4;
  int cols;
  const int8_t* qrow(int r) const { return q + static_cast<int64_t>(r) * cols; }
  const float* drow(int r) const { return d + static_cast<int64_t>(r) * (cols / 32); }
  const int32_t* crow(int r) const { return c4 + static_cast<int64_t>(r) * (cols / 4); }
};

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
constexpr bool kQ80Vnni = true;
#else
constexpr bool kQ80Vnni = false;
#endif

// N Q8_0 weight rows (row_bytes apart) against R quantized x rows:
// out[r][n] = sum_b (dw_nb * dx_rb) * sum_i (w_i * q_i), the float sums kept
// per block parity. Each x block is read once for the N rows and each weight
// block once for the R rows (a long row's x would not stay in L1 across
// weight rows); each output's operations are those of N = R = 1.
template <int N, int R>
void q8_0_tile_q8(const unsigned char* w, size_t row_bytes, const Q8View32& x, int r0, float* out,
                  int64_t out_stride) {
  constexpr int kBb = 34;  // bytes per block: the f16 scale, then 32 int8
  const int blocks = x.cols / 32;
  __m256 acc[N][R][2];
  int b = 0;
  // The N rows are read side by side, which the hardware prefetcher does not
  // follow on short rows (as in gemm_direct.h): each step also prefetches its
  // share of the N rows some tiles on into L2, at least 12 KiB ahead (on an
  // AMD EPYC, batch 1 at hidden 1536 read 15 GB/s one tile ahead, 19-24 two,
  // 23-26 three).
  const size_t tile = N * row_bytes, tiles = std::max<size_t>(2, (12288 + tile - 1) / tile);
  const char* next = reinterpret_cast<const char*>(w) + tiles * tile;
  const size_t share = (N * row_bytes / static_cast<size_t>(std::max(1, kQ80Vnni ? blocks / 2 : blocks)) + 63) / 64 * 64;
  auto ahead = [&] {
    for (size_t i = 0; i < share; i += 64) _mm_prefetch(next + i, _MM_HINT_T1);
    next += share;
  };
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
  // Two blocks per 512-bit dpbusd (lanes 0-7 block b's, 8-15 b + 1's): the
  // weights made unsigned (w + 128, the top bit flipped), the 128 * x this
  // adds taken off by starting each lane at c4.
  __m512 acc2[N][R];
  for (int n = 0; n < N; ++n)
    for (int r = 0; r < R; ++r) acc2[n][r] = _mm512_setzero_ps();
  const __m512i top = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i pick = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  for (; b + 2 <= blocks; b += 2) {
    ahead();
    __m512i u[N];
    __m128 dw[N];
    for (int n = 0; n < N; ++n) {
      const unsigned char* p = w + n * row_bytes + kBb * b;
      const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2));
      const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + kBb + 2));
      u[n] = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1), top);
      // The two f16 scales in one int (two 16-bit stores read as one 32-bit
      // load would stall store forwarding).
      uint16_t h0, h1;
      std::memcpy(&h0, p, 2);
      std::memcpy(&h1, p + kBb, 2);
      dw[n] = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(h0 | static_cast<uint32_t>(h1) << 16)));
    }
    for (int r = 0; r < R; ++r) {
      const __m512i q = _mm512_loadu_si512(x.qrow(r0 + r) + 32 * b);
      const __m512i c = _mm512_loadu_si512(x.crow(r0 + r) + 8 * b);
      const __m128 dx = _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(x.drow(r0 + r) + b)));
      for (int n = 0; n < N; ++n) {
        const __m512 s = _mm512_permutexvar_ps(pick, _mm512_castps128_ps512(_mm_mul_ps(dw[n], dx)));
        acc2[n][r] = _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(c, u[n], q)), acc2[n][r]);
      }
    }
  }
  for (int n = 0; n < N; ++n)
    for (int r = 0; r < R; ++r) {
      acc[n][r][0] = _mm512_castps512_ps256(acc2[n][r]);
      acc[n][r][1] = _mm512_extractf32x8_ps(acc2[n][r], 1);
    }
#else
  for (int n = 0; n < N; ++n)
    for (int r = 0; r < R; ++r) acc[n][r][0] = acc[n][r][1] = _mm256_setzero_ps();
#endif
  // One block per step (the whole row without VNNI, the last block with it):
  // maddubs wants one unsigned side, so |w| meets x with w's sign (at most
  // 2 * 128 * 127 per int16 pair: no saturation), then madd sums the pairs.
  const __m256i ones = _mm256_set1_epi16(1);
  for (; b < blocks; ++b) {
    if constexpr (!kQ80Vnni) ahead();
    __m256i wq[N], aw[N];
    float d[N];
    for (int n = 0; n < N; ++n) {
      const unsigned char* p = w + n * row_bytes + kBb * b;
      d[n] = f16_at(p);
      wq[n] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2));
      aw[n] = _mm256_sign_epi8(wq[n], wq[n]);
    }
    for (int r = 0; r < R; ++r) {
      const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qrow(r0 + r) + 32 * b));
      const float dx = x.drow(r0 + r)[b];
      for (int n = 0; n < N; ++n) {
        const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw[n], _mm256_sign_epi8(xq, wq[n])), ones);
        acc[n][r][b % 2] = _mm256_fmadd_ps(_mm256_set1_ps(d[n] * dx), _mm256_cvtepi32_ps(p), acc[n][r][b % 2]);
      }
    }
  }
  for (int n = 0; n < N; ++n)
    for (int r = 0; r < R; ++r) out[r * out_stride + n] = hsum8(_mm256_add_ps(acc[n][r][0], acc[n][r][1]));
}

}  // namespace
}  // namespace ghostd::runtime::cpu
