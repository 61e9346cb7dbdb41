// Products of the 32-value block types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) in
// integers (the default; GHOSTD_CPU_BLOCK32=float turns it off). Each x row
// is rounded to 8 bits per 32 values, as llama.cpp rounds activations for
// these weights (ggml's Q8_0: one float scale per block, Q8_0 weights' own
// rounding), and each block's 32 products are summed in integers (exact)
// before the scales are applied. The float path spends four vector
// operations on each 16 Q8_0 weights (widen, convert, scale, FMA) and
// unpacks the 4- and 5-bit types block by block; it is compute-bound at
// batch 1 on one core, where this one reads the quants as bytes. Results
// stay batch-invariant (each row is quantized alone, and each output's
// operations are those of a one-row call).
//
// Per type (Block32): Q8_0's signed quants meet x in AVX2's maddubs as |w|
// against x with w's sign, and in VNNI's dpbusd made unsigned (w + 128, the
// top bit flipped), each lane starting at c4 (-128 times its 4 x quants'
// sum) to take the 128 * x off. The 4- and 5-bit types' quants are unsigned
// already (a nibble, Q5's fifth bit from qh): Q4_0's w = u - 8 and Q5_0's
// u - 16 start each lane at c4 >> 4 or >> 3; Q4_1's and Q5_1's
// w = d * u + m add m * dx * sum(x) per block as a second FMA on c4 >> 7.
//
// Every build gives the same bits (so a model answers alike on AVX2 and
// AVX-512 machines): the integer lanes are the same exact sums of 4
// products, and the float sums are kept per block parity (two 8-lane
// accumulators, or one 16-lane one whose halves are those two), added at the
// end. Included by gemm_kquant_int8.h.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "runtime/core/dtype.h"
#include "runtime/cpu/gemm.h"
#include "runtime/cpu/gemm_tiling.h"

namespace ghostd::runtime::cpu {
namespace {

// How far ahead in memory the batch-1 integer kernels (these and the
// K-quants') prefetch their weights into L1: the rows lie end to end.
constexpr size_t kDecodeAhead = 8192;

// 32 floats times id rounded to int8 in order (round to nearest even, the
// MXCSR default; |q| <= 127 when id = 127 / amax). Shared with the per-256
// quantizer of gemm_kquant_int8.h.
inline __m256i round32(const float* xb, __m256 vid) {
  const __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb), vid));
  const __m256i c = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + 8), vid));
  const __m256i e = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + 16), vid));
  const __m256i f = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + 24), vid));
  return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(_mm256_packs_epi32(a, c), _mm256_packs_epi32(e, f)),
                                     _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// Rows [r_begin, r_end) of x into xq's per-32 form (sized by Q8Rows::resize):
// q = round-to-even(x * 127 / amax), d = amax / 127, and c4 = -128 times
// each 4 quants' sum (VNNI's offset correction, one int32 per dpbusd lane).
inline void quantize_rows_q8_32(const float* x, int r_begin, int r_end, Q8Rows& out) {
  const int cols = out.cols, blocks = cols / 32;
  const __m256 sign = _mm256_set1_ps(-0.0f);
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
      const __m256i q = round32(xb, _mm256_set1_ps(id));
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

template <DType D>
struct Block32 {
  static_assert(D == DType::kQ8_0 || D == DType::kQ4_0 || D == DType::kQ4_1 || D == DType::kQ5_0 ||
                D == DType::kQ5_1);
  static constexpr bool kQ8 = D == DType::kQ8_0;                         // signed int8 quants
  static constexpr bool kMin = D == DType::kQ4_1 || D == DType::kQ5_1;   // w = d * u + m
  static constexpr bool kFive = D == DType::kQ5_0 || D == DType::kQ5_1;  // a fifth bit per value in qh
  static constexpr int kBytes = static_cast<int>(dtype_block_bytes(D));
  static constexpr int kQh = kMin ? 4 : 2;                          // offset of qh (Q5)
  static constexpr int kQs = 2 + (kMin ? 2 : 0) + (kFive ? 4 : 0);  // offset of the quants
  // c4 >> kShift is the lane's offset term: -8 (Q4_0) or -16 (Q5_0) times its x sum.
  static constexpr int kShift = D == DType::kQ4_0 ? 4 : D == DType::kQ5_0 ? 3 : 0;

  // The block's 32 unsigned quants in value order: nibbles j in byte j's low
  // half (values 0-15) and high half (16-31), bit j of qh as 16.
  static __m256i quants(const unsigned char* p) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + kQs));
    __m256i u = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), _mm256_set1_epi8(0x0F));
    if constexpr (kFive) {
      uint32_t qh;
      std::memcpy(&qh, p + kQh, 4);
#if defined(__AVX512BW__) && defined(__AVX512VL__)
      // qh is the byte mask itself (bit 4 of a nibble is clear: adding 16 sets it).
      return _mm256_mask_add_epi8(u, static_cast<__mmask32>(qh), u, _mm256_set1_epi8(0x10));
#else
      // Byte j takes qh's byte j / 8 (each 128-bit lane holds all four), then bit j % 8 of it.
      const __m256i sel = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2,
                                           3, 3, 3, 3, 3, 3, 3, 3);
      const __m256i bit = _mm256_setr_epi8(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8,
                                           16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
      const __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(qh)), sel);
      const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(b, bit), bit);
      u = _mm256_or_si256(u, _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
#endif
    }
    return u;
  }

  // One block's weights made ready for the R rows of the one-block step,
  // and its integer lanes against one x row (c: the row's c4 lanes).
  struct One {
    __m256i u, w;  // the unsigned side of maddubs; Q8_0: the quants (their signs)
  };
  static One one(const unsigned char* p) {
    if constexpr (kQ8) {
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + kQs));
      return {_mm256_sign_epi8(w, w), w};
    } else {
      return {quants(p), _mm256_setzero_si256()};
    }
  }
  // maddubs wants one unsigned side: Q8_0's |w| meets x with w's sign (at
  // most 2 * 128 * 127 per int16 pair: no saturation), the others' u meets x
  // (at most 2 * 31 * 127); madd sums the pairs.
  static __m256i lanes(const One& o, __m256i xq, __m256i c) {
    const __m256i ones = _mm256_set1_epi16(1);
    if constexpr (kQ8) {
      return _mm256_madd_epi16(_mm256_maddubs_epi16(o.u, _mm256_sign_epi8(xq, o.w)), ones);
    } else {
      const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(o.u, xq), ones);
      if constexpr (kShift != 0) return _mm256_add_epi32(p, _mm256_srai_epi32(c, kShift));
      return p;
    }
  }

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
  // Blocks p and p + kBytes: their 64 quants in value order, as dpbusd's
  // unsigned side. Q8_0: w + 128. The others: split in one
  // 512-bit register ([qs, qs, qs', qs'] with the second and fourth 128-bit
  // lanes shifted down a nibble), Q5's fifth bits as a 64-bit byte mask.
  static __m512i pair(const unsigned char* p) {
    if constexpr (kQ8) {  // w + 128
      const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + kQs));
      const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + kBytes + kQs));
      return _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1),
                              _mm512_set1_epi8(static_cast<char>(0x80)));
    } else {
      const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + kQs));
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + kBytes + kQs));
      const __m512i ab = _mm512_castsi256_si512(_mm256_set_m128i(b, a));
      const __m512i z = _mm512_shuffle_i64x2(ab, ab, _MM_SHUFFLE(1, 1, 0, 0));
      __m512i u = _mm512_and_si512(_mm512_mask_srli_epi16(z, 0xFF00FF00u, z, 4), _mm512_set1_epi8(0x0F));
      if constexpr (kFive) {
        uint32_t h0, h1;
        std::memcpy(&h0, p + kQh, 4);
        std::memcpy(&h1, p + kBytes + kQh, 4);
        u = _mm512_mask_add_epi8(u, static_cast<__mmask64>(h0 | static_cast<uint64_t>(h1) << 32), u,
                                 _mm512_set1_epi8(0x10));
      }
      return u;
    }
  }
  // Where a pair's dpbusd lanes start: Q8_0 takes off the 128 * x of w + 128.
  static __m512i start(__m512i c) {
    if constexpr (kQ8) return c;
    else if constexpr (kShift != 0) return _mm512_srai_epi32(c, kShift);
    else return _mm512_setzero_si512();
  }
#endif
};

// N weight rows of D (row_bytes apart) against R quantized x rows:
// out[r][n] = sum_b (dw_nb * dx_rb) * lanes_b (+ for Q4_1/Q5_1, m_nb * dx_rb *
// sum(x_b)), the float sums kept per block parity. Each x block is read once
// for the N rows and each weight block once for the R rows (a long row's x
// would not stay in L1 across weight rows); each output's operations are
// those of N = R = 1.
template <DType D, int N, int R>
void block32_tile_q8(const unsigned char* w, size_t row_bytes, const Q8View32& x, int r0, float* out,
                     int64_t out_stride, bool fetch) {
  using B = Block32<D>;
  constexpr int kBb = B::kBytes;
  const int blocks = x.cols / 32;
  __m256 acc[N][R][2];
  int b = 0;
  // The N rows are read side by side, which the hardware prefetcher does not
  // follow on short rows (as in gemm_direct.h): each step also prefetches its
  // share of the rows ahead, on a block's first pass (`fetch`). With several
  // x rows (prefill) into L2, some tiles on, at least 12 KiB ahead (on an AMD
  // EPYC Zen 4, Q8_0 at batch 1 at hidden 1536 read 15 GB/s one tile ahead,
  // 19-24 two, 23-26 three). With one x row (decode) a step is short, and
  // the weights go straight into L1, 8 KiB ahead in memory order: on a Zen 5
  // this read 29 / 29 / 26 GB/s (qo, gate/up, down) on one thread against
  // 26 / 25 / 22 into L2 12 KiB ahead, and 43-50 against 31-40 on two
  // (bench_cpu_gemm, medians of 4-5 rounds).
  constexpr bool kDecode = R == 1;
  const size_t tile = N * row_bytes, tiles = std::max<size_t>(2, (12288 + tile - 1) / tile);
  const char* next = reinterpret_cast<const char*>(w) + (kDecode ? kDecodeAhead : tiles * tile);
  const size_t share = (N * row_bytes / static_cast<size_t>(std::max(1, kQ80Vnni ? blocks / 2 : blocks)) + 63) / 64 * 64;
  auto ahead = [&] {
    if (!fetch) return;
    for (size_t i = 0; i < share; i += 64) _mm_prefetch(next + i, kDecode ? _MM_HINT_T0 : _MM_HINT_T1);
    next += share;
  };
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
  // Two blocks per 512-bit dpbusd, lanes 0-7 block b's, 8-15 b + 1's. The
  // scales are spread over those lanes once per weight row and once per x
  // row, so each (n, r) pair costs one multiply for its dw * dx (the same
  // products as a one-row call's): on a Zen 5 the per-pair permutes and the
  // register moves around them had made the tile issue-bound.
  __m512 acc2[N][R];
  for (int n = 0; n < N; ++n)
    for (int r = 0; r < R; ++r) acc2[n][r] = _mm512_setzero_ps();
  // The f16 at off of blocks p and p + kBb, each over its 8 lanes.
  auto spread = [](const unsigned char* p, int off) {
    uint16_t h0, h1;
    std::memcpy(&h0, p + off, 2);
    std::memcpy(&h1, p + kBb + off, 2);
    return _mm512_cvtph_ps(_mm256_mask_set1_epi16(_mm256_set1_epi16(static_cast<int16_t>(h0)), 0xFF00,
                                                  static_cast<int16_t>(h1)));
  };
  for (; b + 2 <= blocks; b += 2) {
    ahead();
    __m512i u[N];
    __m512 dw[N], mw[N];
    for (int n = 0; n < N; ++n) {
      const unsigned char* p = w + n * row_bytes + kBb * b;
      u[n] = B::pair(p);
      dw[n] = spread(p, 0);
      if constexpr (B::kMin) mw[n] = spread(p, 2);
    }
    for (int r = 0; r < R; ++r) {
      const __m512i q = _mm512_loadu_si512(x.qrow(r0 + r) + 32 * b);
      const __m512i c = _mm512_loadu_si512(x.crow(r0 + r) + 8 * b);
      const __m512i start = B::start(c);
      const float* dxp = x.drow(r0 + r) + b;
      const __m512 dx = _mm512_mask_broadcastss_ps(_mm512_set1_ps(dxp[0]), 0xFF00, _mm_load_ss(dxp + 1));
      [[maybe_unused]] __m512 xsum;
      if constexpr (B::kMin) xsum = _mm512_cvtepi32_ps(_mm512_srai_epi32(c, 7));  // minus each lane's x sum
      for (int n = 0; n < N; ++n) {
        acc2[n][r] = _mm512_fmadd_ps(_mm512_mul_ps(dw[n], dx), _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(start, u[n], q)),
                                     acc2[n][r]);
        if constexpr (B::kMin)  // m * dx * sum(x)
          acc2[n][r] = _mm512_fnmadd_ps(_mm512_mul_ps(mw[n], dx), xsum, acc2[n][r]);
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
  // One block per step: the whole row without VNNI, the last block with it.
  for (; b < blocks; ++b) {
    if constexpr (!kQ80Vnni) ahead();
    typename B::One o[N];
    float d[N], m[N];
    for (int n = 0; n < N; ++n) {
      const unsigned char* p = w + n * row_bytes + kBb * b;
      o[n] = B::one(p);
      d[n] = f16_at(p);
      m[n] = B::kMin ? f16_at(p + 2) : 0.0f;
    }
    for (int r = 0; r < R; ++r) {
      const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qrow(r0 + r) + 32 * b));
      const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.crow(r0 + r) + 8 * b));
      const float dx = x.drow(r0 + r)[b];
      for (int n = 0; n < N; ++n) {
        __m256& a = acc[n][r][b % 2];
        a = _mm256_fmadd_ps(_mm256_set1_ps(d[n] * dx), _mm256_cvtepi32_ps(B::lanes(o[n], xq, c)), a);
        if constexpr (B::kMin)
          a = _mm256_fnmadd_ps(_mm256_set1_ps(m[n] * dx), _mm256_cvtepi32_ps(_mm256_srai_epi32(c, 7)), a);
      }
    }
  }
  for (int n = 0; n < N; ++n)
    for (int r = 0; r < R; ++r) out[r * out_stride + n] = hsum8(_mm256_add_ps(acc[n][r][0], acc[n][r][1]));
}

// Rows [n_begin, n_end) of a 32-value block type (Q8_0, Q4_0, Q4_1, Q5_0,
// Q5_1) against every quantized x row: tiles of 4 weight rows by 4 x rows
// (without VNNI, 1 weight row by 4 x rows, for AVX2's 16 registers), and 2 by
// 1 for the last x rows (on an AMD EPYC, Q8_0 at batch 1 read a little faster
// with 2 than with 1, 4 or 8).
template <DType D>
void gemm_block32_q8(const Q8Rows& xq, const Weight& w, int64_t n_begin, int64_t n_end, float* out,
                     int64_t out_stride) {
  const int cols = static_cast<int>(w.cols), rows = xq.rows;
  const Q8View32 xv{xq.q32.data(), xq.d32.data(), xq.c4.data(), cols};
  const size_t row_bytes = dtype_bytes(D, cols);
  const auto* wd = static_cast<const unsigned char*>(w.data);
  // A block of weight rows comes from memory on its first pass over the x
  // rows (prefetched) and from L2 on the others (not prefetched again).
  auto run = [&]<int N, int R>(int r, int64_t n) {
    const unsigned char* wr = wd + static_cast<size_t>(n) * row_bytes;
    block32_tile_q8<D, N, R>(wr, row_bytes, xv, r, out + r * out_stride + n, out_stride, r == 0);
  };
  constexpr int kN4 = kQ80Vnni ? 4 : 1;  // weight rows per tile with 4 x rows
  constexpr int64_t kBlockN = 64;        // weight rows kept in cache across the x rows
  for (int64_t nb = n_begin; nb < n_end; nb += kBlockN) {
    const int64_t ne = std::min(n_end, nb + kBlockN);
    int r = 0;
    for (; r + 4 <= rows; r += 4) {
      int64_t n = nb;
      for (; n + kN4 <= ne; n += kN4) run.template operator()<kN4, 4>(r, n);
      for (; n < ne; ++n) run.template operator()<1, 4>(r, n);
    }
    for (; r < rows; ++r) {
      int64_t n = nb;
      for (; n + 2 <= ne; n += 2) run.template operator()<2, 1>(r, n);
      for (; n < ne; ++n) run.template operator()<1, 1>(r, n);
    }
  }
}

}  // namespace
}  // namespace ghostd::runtime::cpu
