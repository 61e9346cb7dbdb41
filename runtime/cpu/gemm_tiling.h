// What the per-ISA gemm files share: scalar weight access for row tails and
// the tiling loop over weight rows and x rows. Included only by files built
// for one instruction set each (gemm_avx2.cpp, gemm_avx512.cpp, with F16C);
// everything here has internal linkage, so each file keeps its own copy
// compiled for its own ISA (one shared inline copy could run AVX-512 code on
// an AVX2-only CPU).
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "runtime/core/backend.h"
#include "runtime/core/quant_blocks.h"

namespace ghostd::runtime::cpu {
namespace {

// An f16 scale field as float with F16C (one instruction; the portable
// quant::load_f16 takes a dozen scalar ones, per block of every row).
inline float f16_at(const unsigned char* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// Weight k of a row, as float (row tails).
template <DType D>
inline float load1(const void* row, int k) {
  if constexpr (D == DType::kF32)
    return static_cast<const float*>(row)[k];
  else if constexpr (D == DType::kBF16)
    return bf16_to_f32(static_cast<const uint16_t*>(row)[k]);
  else if constexpr (D == DType::kF16)
    return _cvtsh_ss(static_cast<const uint16_t*>(row)[k]);
  else {
    const uint8_t* blk = static_cast<const uint8_t*>(row) + (k / 32) * 34;
    uint16_t d16;
    std::memcpy(&d16, blk, 2);
    return _cvtsh_ss(d16) * static_cast<float>(static_cast<int8_t>(blk[2 + k % 32]));
  }
}

// 8 bytes at p widened to 8 int32 lanes.
inline __m256i widen8(const unsigned char* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

// y = d * q - m per lane, two roundings as in the reference (no FMA).
inline void store_dqm(float* y, __m256 d, __m256i q, __m256 m) {
  _mm256_store_ps(y, _mm256_sub_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(q)), m));
}

// One block of a ggml type into dtype_block_elems(D) floats at y (32-byte
// aligned). The types of the common downloads (Q4_0, Q4_K_M's Q4_K/Q5_K/Q6_K)
// are unpacked eight lanes at a time with AVX2, with the reference's rounding
// steps, so they give the same values as dequantize_row; the rarer ones use
// the scalar reference.
template <DType D>
inline void unpack_block(const unsigned char* b, float* y) {
  if constexpr (D == DType::kQ4_0) {
    const __m256i low4 = _mm256_set1_epi32(0xF);
    const __m256 d = _mm256_set1_ps(f16_at(b));
    const __m256i eight = _mm256_set1_epi32(8);
    for (int l = 0; l < 16; l += 8) {
      const __m256i a = widen8(b + 2 + l);
      _mm256_store_ps(y + l, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(a, low4), eight)), d));
      _mm256_store_ps(y + 16 + l, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(a, 4), eight)), d));
    }
  } else if constexpr (D == DType::kQ4_K || D == DType::kQ5_K) {
    const float d = f16_at(b);
    const float dmin = f16_at(b + 2);
    const unsigned char* qh = b + 16;
    const unsigned char* qs = b + (D == DType::kQ5_K ? 48 : 16);
    const __m256i one = _mm256_set1_epi32(1), low4 = _mm256_set1_epi32(0xF);
    for (int c = 0; c < 4; ++c, qs += 32, y += 64) {
      int sc = 0, m = 0;
      quant::k_scale_min(2 * c, b + 4, sc, m);
      const __m256 d1 = _mm256_set1_ps(d * static_cast<float>(sc)), m1 = _mm256_set1_ps(dmin * static_cast<float>(m));
      quant::k_scale_min(2 * c + 1, b + 4, sc, m);
      const __m256 d2 = _mm256_set1_ps(d * static_cast<float>(sc)), m2 = _mm256_set1_ps(dmin * static_cast<float>(m));
      for (int l = 0; l < 32; l += 8) {
        const __m256i a = widen8(qs + l);
        __m256i lo = _mm256_and_si256(a, low4), hi = _mm256_srli_epi32(a, 4);
        if constexpr (D == DType::kQ5_K) {
          const __m256i h = widen8(qh + l);
          lo = _mm256_add_epi32(lo, _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 2 * c), one), 4));
          hi = _mm256_add_epi32(hi, _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 2 * c + 1), one), 4));
        }
        store_dqm(y + l, d1, lo, m1);
        store_dqm(y + 32 + l, d2, hi, m2);
      }
    }
  } else if constexpr (D == DType::kQ6_K) {
    const unsigned char* ql = b;
    const unsigned char* qh = b + 128;
    const auto* sc = reinterpret_cast<const int8_t*>(b + 192);
    const float d = f16_at(b + 208);
    const __m256i three = _mm256_set1_epi32(3), off = _mm256_set1_epi32(32), low4 = _mm256_set1_epi32(0xF);
    for (int half = 0; half < 2; ++half, ql += 64, qh += 32, sc += 8, y += 128) {
      for (int l = 0; l < 32; l += 8) {
        const int is = l / 16;
        const __m256i a = widen8(ql + l), c = widen8(ql + 32 + l), h = widen8(qh + l);
        auto high2 = [&](int shift) { return _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, shift), three), 4); };
        const __m256i q1 = _mm256_sub_epi32(_mm256_or_si256(_mm256_and_si256(a, low4), high2(0)), off);
        const __m256i q2 = _mm256_sub_epi32(_mm256_or_si256(_mm256_and_si256(c, low4), high2(2)), off);
        const __m256i q3 = _mm256_sub_epi32(_mm256_or_si256(_mm256_srli_epi32(a, 4), high2(4)), off);
        const __m256i q4 = _mm256_sub_epi32(_mm256_or_si256(_mm256_srli_epi32(c, 4), high2(6)), off);
        // (d * sc) first, then * q: the reference's rounding order.
        auto put = [&](float* dst, int s, __m256i q) {
          _mm256_store_ps(dst, _mm256_mul_ps(_mm256_set1_ps(d * static_cast<float>(sc[s])), _mm256_cvtepi32_ps(q)));
        };
        put(y + l, is, q1);
        put(y + 32 + l, is + 2, q2);
        put(y + 64 + l, is + 4, q3);
        put(y + 96 + l, is + 6, q4);
      }
    }
  } else {
    quant::dequant_block<D>(b, y);
  }
}

inline float hsum8(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

// Q4_K (most of a Q4_K_M file) without a scratch round trip: per 32-value
// sub-block, sum(x * (d*sc*q - dmin*m)) = (d*sc) * sum(x*q) - (dmin*m) * sum(x),
// with the nibbles converted in registers. xsums holds each x row's
// per-sub-block lane sums (q4k_x_sums), computed once per call rather than per
// weight row. Same order for every R.
template <int R>
void q4k_rows_avx2(const float* x, int cols, const float* xsums, const void* wrow, float* out,
                   int64_t out_stride) {
  constexpr size_t kBb = dtype_block_bytes(DType::kQ4_K);
  const __m256i low4 = _mm256_set1_epi32(0xF);
  const int64_t sums_stride = cols / 4;  // 8 lanes per 32 values
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  const auto* blk = static_cast<const unsigned char*>(wrow);
  for (int k0 = 0; k0 < cols; k0 += 256, blk += kBb) {
    const float d = f16_at(blk);
    const float dmin = f16_at(blk + 2);
    const unsigned char* qs = blk + 16;
    uint8_t sc[8], m[8];
    quant::k_scales_mins(blk + 4, sc, m);
    for (int c = 0; c < 4; ++c, qs += 32) {
      const __m256 d1 = _mm256_set1_ps(d * static_cast<float>(sc[2 * c]));
      const __m256 m1 = _mm256_set1_ps(dmin * static_cast<float>(m[2 * c]));
      const __m256 d2 = _mm256_set1_ps(d * static_cast<float>(sc[2 * c + 1]));
      const __m256 m2 = _mm256_set1_ps(dmin * static_cast<float>(m[2 * c + 1]));
      __m256 xq_lo[R], xq_hi[R];
      for (int r = 0; r < R; ++r) xq_lo[r] = xq_hi[r] = _mm256_setzero_ps();
      for (int l = 0; l < 32; l += 8) {
        const __m256i a = widen8(qs + l);
        const __m256 lo = _mm256_cvtepi32_ps(_mm256_and_si256(a, low4));
        const __m256 hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(a, 4));
        for (int r = 0; r < R; ++r) {
          const float* xr = x + static_cast<int64_t>(r) * cols + k0 + 64 * c + l;
          xq_lo[r] = _mm256_fmadd_ps(_mm256_loadu_ps(xr), lo, xq_lo[r]);
          xq_hi[r] = _mm256_fmadd_ps(_mm256_loadu_ps(xr + 32), hi, xq_hi[r]);
        }
      }
      const int64_t sub = (k0 + 64 * c) / 32;
      for (int r = 0; r < R; ++r) {
        const float* xs = xsums + r * sums_stride + sub * 8;
        acc[r] = _mm256_fnmadd_ps(m1, _mm256_loadu_ps(xs), _mm256_fmadd_ps(d1, xq_lo[r], acc[r]));
        acc[r] = _mm256_fnmadd_ps(m2, _mm256_loadu_ps(xs + 8), _mm256_fmadd_ps(d2, xq_hi[r], acc[r]));
      }
    }
  }
  for (int r = 0; r < R; ++r) out[r * out_stride] = hsum8(acc[r]);
}

// Lane sums of each 32-value chunk of each x row: ((x[0:8] + x[8:16]) +
// x[16:24]) + x[24:32], one fixed order, so a row's sums never depend on the batch.
inline void q4k_x_sums(const float* x, int rows, int cols, float* sums) {
  for (int r = 0; r < rows; ++r) {
    for (int s = 0; s < cols / 32; ++s) {
      const float* xs = x + static_cast<int64_t>(r) * cols + 32 * s;
      __m256 v = _mm256_setzero_ps();
      for (int l = 0; l < 32; l += 8) v = _mm256_add_ps(v, _mm256_loadu_ps(xs + l));
      _mm256_storeu_ps(sums + (static_cast<int64_t>(r) * (cols / 32) + s) * 8, v);
    }
  }
}

// gemm_tiled's loop for Q4_K, with the x sums made first (in a per-thread
// buffer kept between calls: no allocation per matmul).
inline void gemm_q4k_avx2(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end, float* out,
                          int64_t out_stride) {
  const int cols = static_cast<int>(w.cols);
  thread_local std::vector<float> sums;
  sums.resize(static_cast<size_t>(rows) * static_cast<size_t>(cols / 4));
  q4k_x_sums(x, rows, cols, sums.data());
  const size_t row_bytes = dtype_bytes(DType::kQ4_K, cols);
  auto wrow = [&](int64_t n) { return static_cast<const unsigned char*>(w.data) + static_cast<size_t>(n) * row_bytes; };
  constexpr int64_t kBlockN = 64;
  for (int64_t nb = n_begin; nb < n_end; nb += kBlockN) {
    const int64_t ne = nb + kBlockN < n_end ? nb + kBlockN : n_end;
    int r = 0;
    for (; r + 4 <= rows; r += 4)
      for (int64_t n = nb; n < ne; ++n)
        q4k_rows_avx2<4>(x + static_cast<int64_t>(r) * cols, cols, sums.data() + static_cast<int64_t>(r) * (cols / 4),
                         wrow(n), out + r * out_stride + n, out_stride);
    for (; r < rows; ++r)
      for (int64_t n = nb; n < ne; ++n)
        q4k_rows_avx2<1>(x + static_cast<int64_t>(r) * cols, cols, sums.data() + static_cast<int64_t>(r) * (cols / 4),
                         wrow(n), out + r * out_stride + n, out_stride);
  }
}

// Q6_K the same way: per 16-value sub-block, (d*sc) * sum(x*q), the 6-bit
// values assembled and converted in registers. Same order for every R.
template <int R>
void q6k_rows_avx2(const float* x, int cols, const void* wrow, float* out, int64_t out_stride) {
  constexpr size_t kBb = dtype_block_bytes(DType::kQ6_K);
  const __m256i low4 = _mm256_set1_epi32(0xF), three = _mm256_set1_epi32(3), off = _mm256_set1_epi32(32);
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  const auto* blk = static_cast<const unsigned char*>(wrow);
  for (int k0 = 0; k0 < cols; k0 += 256, blk += kBb) {
    const unsigned char* ql = blk;
    const unsigned char* qh = blk + 128;
    const auto* sc = reinterpret_cast<const int8_t*>(blk + 192);
    const float d = f16_at(blk + 208);
    for (int half = 0; half < 2; ++half, ql += 64, qh += 32, sc += 8) {
      for (int is = 0; is < 2; ++is) {
        __m256 xq[4][R];
        for (int k = 0; k < 4; ++k)
          for (int r = 0; r < R; ++r) xq[k][r] = _mm256_setzero_ps();
        for (int l = 16 * is; l < 16 * is + 16; l += 8) {
          const __m256i a = widen8(ql + l), c = widen8(ql + 32 + l), h = widen8(qh + l);
          auto high2 = [&](int shift) { return _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, shift), three), 4); };
          const __m256 f[4] = {
              _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_or_si256(_mm256_and_si256(a, low4), high2(0)), off)),
              _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_or_si256(_mm256_and_si256(c, low4), high2(2)), off)),
              _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_or_si256(_mm256_srli_epi32(a, 4), high2(4)), off)),
              _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_or_si256(_mm256_srli_epi32(c, 4), high2(6)), off))};
          for (int r = 0; r < R; ++r) {
            const float* xr = x + static_cast<int64_t>(r) * cols + k0 + 128 * half + l;
            for (int k = 0; k < 4; ++k) xq[k][r] = _mm256_fmadd_ps(_mm256_loadu_ps(xr + 32 * k), f[k], xq[k][r]);
          }
        }
        for (int k = 0; k < 4; ++k) {
          const __m256 dsc = _mm256_set1_ps(d * static_cast<float>(sc[is + 2 * k]));
          for (int r = 0; r < R; ++r) acc[r] = _mm256_fmadd_ps(dsc, xq[k][r], acc[r]);
        }
      }
    }
  }
  for (int r = 0; r < R; ++r) out[r * out_stride] = hsum8(acc[r]);
}

// gemm_tiled's interface for q6k_rows_avx2.
struct Q6kDot {
  template <DType D, int R>
  static void rows(const float* x, int cols, const void* wrow, float* out, int64_t out_stride) {
    static_assert(D == DType::kQ6_K);
    q6k_rows_avx2<R>(x, cols, wrow, out, out_stride);
  }
};

// ggml block types other than Q8_0 (whose values load directly) are unpacked a
// block at a time; Q8_0 keeps its direct per-8-values path.
template <DType D>
inline constexpr bool kUnpackBlocks = dtype_is_quantized(D) && D != DType::kQ8_0;

template <DType D>
inline const void* row_ptr(const Weight& w, int64_t n) {
  if constexpr (D == DType::kF32)
    return static_cast<const float*>(w.data) + n * w.cols;
  else if constexpr (dtype_is_quantized(D))
    return static_cast<const uint8_t*>(w.data) + n * (w.cols / dtype_block_elems(D)) * dtype_block_bytes(D);
  else
    return static_cast<const uint16_t*>(w.data) + n * w.cols;
}

// Dot::template rows<D, R>(x, cols, wrow, out, out_stride) computes R rows of
// x against one weight row with the same operation order for every R.
template <class Dot, DType D>
void gemm_tiled(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end,
                float* out, int64_t out_stride) {
  const int cols = static_cast<int>(w.cols);
  constexpr int64_t kBlockN = 64;  // weight rows kept hot in cache across x tiles
  for (int64_t nb = n_begin; nb < n_end; nb += kBlockN) {
    int64_t ne = nb + kBlockN < n_end ? nb + kBlockN : n_end;
    int r = 0;
    for (; r + 4 <= rows; r += 4)
      for (int64_t n = nb; n < ne; ++n)
        Dot::template rows<D, 4>(x + static_cast<int64_t>(r) * cols, cols, row_ptr<D>(w, n),
                                 out + r * out_stride + n, out_stride);
    for (; r < rows; ++r)
      for (int64_t n = nb; n < ne; ++n)
        Dot::template rows<D, 1>(x + static_cast<int64_t>(r) * cols, cols, row_ptr<D>(w, n),
                                 out + r * out_stride + n, out_stride);
  }
}

}  // namespace
}  // namespace ghostd::runtime::cpu
