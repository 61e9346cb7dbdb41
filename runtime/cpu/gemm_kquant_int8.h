// Q4_K, Q5_K and Q6_K products in integers (the default; GHOSTD_CPU_KQUANT=float
// turns it off): each x row is quantized to 8 bits per 256 values (one float
// scale per block, as ggml's Q8_K), and a weight block's quants meet the
// row's in 8-bit SIMD (maddubs: 32 products per instruction), the block
// scales applied to the integer sums. The float path converts every quant to
// float and spends about five operations per 16 values on it; this one reads
// the quants as bytes. The price is the rounding of x to 8 bits (about 7e-4
// of the sum of |x * w| on random rows, against float's 1e-7), well under the
// weights' own 4-6 bit rounding: a row's result still does not depend on the
// batch, the split of columns or the thread count, since each row is
// quantized alone. AVX2 intrinsics, included by the AVX2 and AVX-512 kernel
// files (anonymous namespace: one copy per ISA file); the AVX-512 copy takes
// 512-bit steps where __AVX512BW__ is defined.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "runtime/core/backend.h"
#include "runtime/core/quant_blocks.h"
#include "runtime/cpu/gemm.h"
#include "runtime/cpu/gemm_block32_int8.h"
#include "runtime/cpu/gemm_tiling.h"

namespace ghostd::runtime::cpu {
namespace {

// Rows [r_begin, r_end) of x into xq (sized by Q8Rows::resize).
inline void quantize_rows_q8(const float* x, int r_begin, int r_end, Q8Rows& out) {
  const int cols = out.cols, blocks = cols / 256;
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int r = r_begin; r < r_end; ++r) {
    for (int b = 0; b < blocks; ++b) {
      const float* xb = x + static_cast<int64_t>(r) * cols + b * 256;
      __m256 mx = _mm256_setzero_ps();
      for (int i = 0; i < 256; i += 8) mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, _mm256_loadu_ps(xb + i)));
      alignas(32) float lanes[8];
      _mm256_store_ps(lanes, mx);
      float amax = 0;
      for (float v : lanes) amax = std::max(amax, v);
      const float id = amax > 0 ? 127.0f / amax : 0.0f;
      out.d[static_cast<size_t>(r) * blocks + b] = amax / 127.0f;
      const __m256 vid = _mm256_set1_ps(id);
      int8_t* qb = out.q.data() + static_cast<int64_t>(r) * cols + b * 256;
      for (int i = 0; i < 256; i += 32) _mm256_storeu_si256(reinterpret_cast<__m256i*>(qb + i), round32(xb + i, vid));
      int16_t* s16 = out.s16.data() + static_cast<size_t>(r) * (cols / 16) + b * 16;
      int16_t* s32 = out.s32.data() + static_cast<size_t>(r) * (cols / 32) + b * 8;
      for (int s = 0; s < 16; ++s) {
        int sum = 0;
        for (int i = 0; i < 16; ++i) sum += qb[16 * s + i];
        s16[s] = static_cast<int16_t>(sum);
      }
      for (int s = 0; s < 8; ++s) s32[s] = static_cast<int16_t>(s16[2 * s] + s16[2 * s + 1]);
    }
  }
}

#ifdef __AVX512BW__
// The AVX-512 file's kernels take two 32-value pieces per instruction and
// keep 16 int32 lanes; lanes i and i + 8 hold what the 256-bit path adds into
// its lane i, so adding the halves gives its integers exactly (and so its
// float results, bit for bit).
inline __m256i fold512(__m512i v) {
  return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}
// acc + madd(a, b): one VNNI dpwssd where the build has it (the same
// wrapping int32 sums, so the same bits).
inline __m512i madd_add(__m512i acc, __m512i a, __m512i b) {
#ifdef __AVX512VNNI__
  return _mm512_dpwssd_epi32(acc, a, b);
#else
  return _mm512_add_epi32(acc, _mm512_madd_epi16(a, b));
#endif
}
#endif

// The quantized x rows r0 .. r0 + R - 1 of a call.
struct Q8View {
  const int8_t* q;
  const float* d;
  const int16_t* s16;
  const int16_t* s32;
  int cols;
  const int8_t* qrow(int r) const { return q + static_cast<int64_t>(r) * cols; }
  const float* drow(int r) const { return d + static_cast<int64_t>(r) * (cols / 256); }
  const int16_t* s16row(int r) const { return s16 + static_cast<int64_t>(r) * (cols / 16); }
  const int16_t* s32row(int r) const { return s32 + static_cast<int64_t>(r) * (cols / 32); }
};

// With one x row (decode) a block's work is short and the weights stream:
// each block prefetches the lines 8 KiB ahead of it into L1, in memory order
// (the rows lie end to end), as the 32-value block kernels do. On a Zen 5,
// Q4_K_M decode 1.13x on one thread and 1.17x on two (4 KiB and 16 KiB
// ahead were slower; docs/benchmarks.md).
template <size_t kBb>
inline void kquant_ahead(const unsigned char* w) {
  for (size_t i = 0; i < kBb; i += 64) _mm_prefetch(reinterpret_cast<const char*>(w) + kDecodeAhead + i, _MM_HINT_T0);
}

// One Q4_K or Q5_K weight row against R quantized x rows: per block,
// d * dx * sum_j sc_j * (q . q8)_j - dmin * dx * sum_j m_j * sum(q8)_j.
// Q5_K is Q4_K with a fifth bit per value in qh (bit 2c of qh[l] for value l
// of sub-block 2c, bit 2c + 1 for sub-block 2c + 1): quants 0..31. The quants
// are split once for the R rows; each row's operations are those of R = 1.
template <DType D, int R>
void q45k_rows_q8(const unsigned char* w, const Q8View& x, int r0, float* out, int64_t out_stride) {
  static_assert(D == DType::kQ4_K || D == DType::kQ5_K);
  constexpr size_t kBb = dtype_block_bytes(D);
  constexpr int kQs = D == DType::kQ4_K ? 16 : 48;  // offset of the nibbles in a block
  const __m256i low4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
  const int blocks = x.cols / 256;
  __m256 acc[R];
  __m128 mins[R];  // the dmin terms, 4 lanes added at the end
  for (int r = 0; r < R; ++r) {
    acc[r] = _mm256_setzero_ps();
    mins[r] = _mm_setzero_ps();
  }
  for (int b = 0; b < blocks; ++b, w += kBb) {
    if constexpr (R == 1) kquant_ahead<kBb>(w);
    const float d = f16_at(w), dmin = f16_at(w + 2);
    uint8_t sc[8], m[8];
    quant::k_scales_mins(w + 4, sc, m);
    const __m128i mm = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(m)));
    __m256i sumi[R];
    for (int r = 0; r < R; ++r) {
      // sum_j m_j * sum(q8)_j: one madd over the 8 sub-blocks (4 lanes, each
      // below 2^20: exact as float).
      const __m128i msum = _mm_madd_epi16(mm, _mm_loadu_si128(reinterpret_cast<const __m128i*>(x.s32row(r0 + r) + 8 * b)));
      mins[r] = _mm_fmadd_ps(_mm_set1_ps(dmin * x.drow(r0 + r)[b]), _mm_cvtepi32_ps(msum), mins[r]);
      sumi[r] = _mm256_setzero_si256();
    }
#ifdef __AVX512BW__
    __m512i sumi2[R];
    for (int r = 0; r < R; ++r) sumi2[r] = _mm512_setzero_si512();
    // The 8 scales as int16 lanes, from which each chunk's pair is permuted.
    const __m512i sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sc))));
#endif
    for (int c = 0; c < 4; ++c) {
      // lo: sub-block 2c's quants, hi: sub-block 2c + 1's.
      [[maybe_unused]] auto split = [&](__m256i& lo, __m256i& hi) {
        const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + kQs + 32 * c));
        lo = _mm256_and_si256(bits, low4);
        hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), low4);
        if constexpr (D == DType::kQ5_K) {
          // Bit s of each qh byte to bit 4 (the 16-bit shift's carry from the
          // next byte lands above bit 0 and is masked off).
          const __m256i hbits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 16));
          auto fifth = [&](int s) { return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, s), one), 4); };
          lo = _mm256_or_si256(lo, fifth(2 * c));
          hi = _mm256_or_si256(hi, fifth(2 * c + 1));
        }
      };
#ifdef __AVX512BW__
      // Both sub-blocks in one 512-bit maddubs/madd: their 64 x values are
      // contiguous. Lanes 0-7 and 8-15 are added at the block's end, which
      // gives the 256-bit path's integers exactly.
      __m512i q;
      if constexpr (D == DType::kQ4_K) {
        // The chunk's 32 bytes in both halves, the upper half shifted down a
        // nibble: lo below, hi above.
        const __m512i bits =
            _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + kQs + 32 * c)));
        q = _mm512_and_si512(_mm512_mask_srli_epi16(bits, 0xFFFF0000u, bits, 4), _mm512_set1_epi8(0x0F));
      } else {
        __m256i lo, hi;
        split(lo, hi);
        q = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
      }
      // sc[2c] for int16 lanes 0-15, sc[2c + 1] for 16-31.
      const __m512i s2 = _mm512_permutexvar_epi16(
          _mm512_mask_set1_epi16(_mm512_set1_epi16(static_cast<int16_t>(2 * c)), 0xFFFF0000u,
                                 static_cast<int16_t>(2 * c + 1)),
          sc16);
      for (int r = 0; r < R; ++r) {
        const int8_t* q8 = x.qrow(r0 + r) + 256 * b + 64 * c;
        sumi2[r] = madd_add(sumi2[r], _mm512_maddubs_epi16(q, _mm512_loadu_si512(q8)), s2);
      }
#else
      __m256i lo, hi;
      split(lo, hi);
      const __m256i slo = _mm256_set1_epi16(static_cast<int16_t>(sc[2 * c]));
      const __m256i shi = _mm256_set1_epi16(static_cast<int16_t>(sc[2 * c + 1]));
      for (int r = 0; r < R; ++r) {
        const int8_t* q8 = x.qrow(r0 + r) + 256 * b + 64 * c;
        const __m256i plo = _mm256_maddubs_epi16(lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q8)));
        const __m256i phi = _mm256_maddubs_epi16(hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q8 + 32)));
        sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(plo, slo));
        sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(phi, shi));
      }
#endif
    }
#ifdef __AVX512BW__
    for (int r = 0; r < R; ++r) sumi[r] = fold512(sumi2[r]);
#endif
    for (int r = 0; r < R; ++r)
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * x.drow(r0 + r)[b]), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
  }
  for (int r = 0; r < R; ++r) {
    __m128 v = _mm_add_ps(mins[r], _mm_movehl_ps(mins[r], mins[r]));
    v = _mm_add_ss(v, _mm_movehdup_ps(v));
    out[r * out_stride] = hsum8(acc[r]) - _mm_cvtss_f32(v);
  }
}

// One Q6_K weight row against R quantized x rows: the 6-bit quants are read
// as q + 32 in 0..63 (maddubs wants one unsigned side), and the 32 * sum(q8)
// this adds is taken off per 16-value sub-block with its scale.
template <int R>
void q6k_rows_q8(const unsigned char* w, const Q8View& x, int r0, float* out, int64_t out_stride) {
  constexpr size_t kBb = dtype_block_bytes(DType::kQ6_K);
  const int blocks = x.cols / 256;
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  for (int b = 0; b < blocks; ++b, w += kBb) {
    if constexpr (R == 1) kquant_ahead<kBb>(w);
    const auto* sc = reinterpret_cast<const int8_t*>(w + 192);
    const float d = f16_at(w + 208);
    // Values 16j..16j+15 of the block have scale sc[j] (j = 8 * half + 2 * k
    // + (l >= 16) below).
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc)));
    __m256i sumi[R];
    for (int r = 0; r < R; ++r) {
      // The offset's 32 * sum_j sc_j * sum(q8)_j has the block's scale too, so
      // it starts the integer sum (negated; any lane: only the total counts).
      const __m256i p = _mm256_madd_epi16(
          sc16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.s16row(r0 + r) + 16 * b)));
      sumi[r] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(p, 5));
    }
#ifdef __AVX512BW__
    __m512i sumi2[R];
    for (int r = 0; r < R; ++r) sumi2[r] = _mm512_zextsi256_si512(sumi[r]);
#endif
    for (int half = 0; half < 2; ++half) {
      const unsigned char* ql = w + 64 * half;
      const unsigned char* qh = w + 128 + 32 * half;
#ifdef __AVX512BW__
      // Quarters k and k + 1 (64 contiguous x values) per 512-bit maddubs/
      // madd, built in 512-bit registers: ql's 64 bytes hold a (lower half)
      // and c (upper), qh is broadcast and shifted 2 more in the upper half;
      // the scales are permuted from the block's 16. Lanes 0-7 and 8-15
      // added at the block's end give the 256-bit integers.
      {
        const __m512i low4x = _mm512_set1_epi8(0x0F), threex = _mm512_set1_epi8(3);
        const __m512i ac = _mm512_loadu_si512(ql);
        const __m512i hh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh)));
        const __m512i h01 = _mm512_mask_srli_epi16(hh, 0xFFFF0000u, hh, 2);
        const __m512i h23 = _mm512_srli_epi16(h01, 4);
        const __m512i qq[2] = {
            _mm512_or_si512(_mm512_and_si512(ac, low4x), _mm512_slli_epi16(_mm512_and_si512(h01, threex), 4)),
            _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ac, 4), low4x),
                            _mm512_slli_epi16(_mm512_and_si512(h23, threex), 4))};
        // int16 lane l of quarter pair (k, k + 1) takes scale 8 * half + 2 * k + l / 8.
        const __m512i lane8 = _mm512_set_epi16(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1,
                                               0, 0, 0, 0, 0, 0, 0, 0);
        for (int k = 0; k < 4; k += 2) {
          const __m512i s2 = _mm512_permutexvar_epi16(
              _mm512_add_epi16(lane8, _mm512_set1_epi16(static_cast<int16_t>(8 * half + 2 * k))),
              _mm512_castsi256_si512(sc16));
          for (int r = 0; r < R; ++r) {
            const int8_t* q8 = x.qrow(r0 + r) + 256 * b + 128 * half + 32 * k;
            sumi2[r] = madd_add(sumi2[r], _mm512_maddubs_epi16(qq[k / 2], _mm512_loadu_si512(q8)), s2);
          }
        }
      }
#else
      const __m256i low4 = _mm256_set1_epi8(0x0F), three = _mm256_set1_epi8(3);
      const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
      const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh));
      auto high2 = [&](int shift) {
        return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, shift), three), 4);
      };
      const __m256i q[4] = {_mm256_or_si256(_mm256_and_si256(a, low4), high2(0)),
                            _mm256_or_si256(_mm256_and_si256(c, low4), high2(2)),
                            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(a, 4), low4), high2(4)),
                            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(c, 4), low4), high2(6))};
      // int16 lanes 0-7 hold values 0..15 of the 32, lanes 8-15 values 16..31.
      auto scales = [&](int k) {
        return _mm256_set_m128i(_mm_set1_epi16(sc[8 * half + 2 * k + 1]), _mm_set1_epi16(sc[8 * half + 2 * k]));
      };
      for (int k = 0; k < 4; ++k) {
        const __m256i s = scales(k);
        for (int r = 0; r < R; ++r) {
          const int8_t* q8 = x.qrow(r0 + r) + 256 * b + 128 * half + 32 * k;
          const __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q8)));
          sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(p, s));
        }
      }
#endif
    }
#ifdef __AVX512BW__
    for (int r = 0; r < R; ++r) sumi[r] = fold512(sumi2[r]);
#endif
    for (int r = 0; r < R; ++r)
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * x.drow(r0 + r)[b]), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
  }
  for (int r = 0; r < R; ++r) out[r * out_stride] = hsum8(acc[r]);
}

// Q4_K, Q5_K or Q6_K weight rows [n_begin, n_end) against every quantized
// x row, 4 x rows per pass over a weight row.
template <DType D>
void gemm_kquant_q8(const Q8Rows& xq, const Weight& w, int64_t n_begin, int64_t n_end, float* out,
                    int64_t out_stride) {
  static_assert(D == DType::kQ4_K || D == DType::kQ5_K || D == DType::kQ6_K);
  const int cols = static_cast<int>(w.cols), rows = xq.rows;
  const Q8View xv{xq.q.data(), xq.d.data(), xq.s16.data(), xq.s32.data(), cols};
  const size_t row_bytes = dtype_bytes(D, cols);
  const auto* wd = static_cast<const unsigned char*>(w.data);
  auto run = [&]<int R>(int r, int64_t n) {
    const unsigned char* wr = wd + static_cast<size_t>(n) * row_bytes;
    if constexpr (D == DType::kQ6_K) q6k_rows_q8<R>(wr, xv, r, out + r * out_stride + n, out_stride);
    else q45k_rows_q8<D, R>(wr, xv, r, out + r * out_stride + n, out_stride);
  };
  constexpr int64_t kBlockN = 64;  // weight rows kept in cache across the x rows
  for (int64_t nb = n_begin; nb < n_end; nb += kBlockN) {
    const int64_t ne = std::min(n_end, nb + kBlockN);
    int r = 0;
    for (; r + 4 <= rows; r += 4)
      for (int64_t n = nb; n < ne; ++n) run.template operator()<4>(r, n);
    for (; r < rows; ++r)
      for (int64_t n = nb; n < ne; ++n) run.template operator()<1>(r, n);
  }
}

// Any dtype against quantized x: the integer kernels for the K-quants (x per
// 256) and the 32-value block types (x per 32); false for the rest, or
// without x's form (the caller takes the float kernels).
inline bool gemm_q8_dispatch(const Q8Rows& xq, const Weight& w, int64_t n_begin, int64_t n_end, float* out,
                             int64_t out_stride) {
  const bool k = xq.per256 && w.cols % 256 == 0, b32 = xq.per32 && w.cols % 32 == 0;
  switch (w.dtype) {
    case DType::kQ4_K: if (!k) return false; gemm_kquant_q8<DType::kQ4_K>(xq, w, n_begin, n_end, out, out_stride); return true;
    case DType::kQ5_K: if (!k) return false; gemm_kquant_q8<DType::kQ5_K>(xq, w, n_begin, n_end, out, out_stride); return true;
    case DType::kQ6_K: if (!k) return false; gemm_kquant_q8<DType::kQ6_K>(xq, w, n_begin, n_end, out, out_stride); return true;
    case DType::kQ8_0: if (!b32) return false; gemm_block32_q8<DType::kQ8_0>(xq, w, n_begin, n_end, out, out_stride); return true;
    case DType::kQ4_0: if (!b32) return false; gemm_block32_q8<DType::kQ4_0>(xq, w, n_begin, n_end, out, out_stride); return true;
    case DType::kQ4_1: if (!b32) return false; gemm_block32_q8<DType::kQ4_1>(xq, w, n_begin, n_end, out, out_stride); return true;
    case DType::kQ5_0: if (!b32) return false; gemm_block32_q8<DType::kQ5_0>(xq, w, n_begin, n_end, out, out_stride); return true;
    case DType::kQ5_1: if (!b32) return false; gemm_block32_q8<DType::kQ5_1>(xq, w, n_begin, n_end, out, out_stride); return true;
    default: return false;
  }
}

// The whole product from float x, x quantized here (a per-thread buffer kept
// between calls); the backend quantizes once per call instead (Kernels::q8).
template <DType D>
void gemm_kquant_int8(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end, float* out,
                      int64_t out_stride) {
  thread_local Q8Rows xq;
  xq.resize(rows, static_cast<int>(w.cols));
  quantize_rows_q8(x, 0, rows, xq);
  gemm_kquant_q8<D>(xq, w, n_begin, n_end, out, out_stride);
}

}  // namespace
}  // namespace ghostd::runtime::cpu
