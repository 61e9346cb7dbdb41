// AVX-512 kernels (compiled with -mavx512f/bw/vl/dq; called after a CPU check).
#include <immintrin.h>

#include <cstring>

#include "runtime/cpu/gemm.h"
#include "runtime/cpu/gemm_tiling.h"

namespace ghostd::runtime::cpu {

namespace {

template <DType D>
inline __m512 load16(const void* row, int k) {
  if constexpr (D == DType::kF32) {
    return _mm512_loadu_ps(static_cast<const float*>(row) + k);
  } else if constexpr (D == DType::kBF16) {
    __m256i h =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(row) + k));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  } else if constexpr (D == DType::kF16) {
    __m256i h =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(row) + k));
    return _mm512_cvtph_ps(h);
  } else {
    const uint8_t* blk = static_cast<const uint8_t*>(row) + (k / 32) * 34;
    uint16_t d16;
    std::memcpy(&d16, blk, 2);
    __m512 d = _mm512_set1_ps(_cvtsh_ss(d16));
    __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2 + (k % 32)));
    return _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)));
  }
}

inline __m512 load_2x8(const float* p) {
  return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_load_ps(p)), _mm256_load_ps(p + 8), 1);
}

// Same operation order for every row whatever R (see gemm.h).
struct Dot {
  template <DType D, int R>
  static void rows(const float* x, int cols, const void* wrow, float* out, int64_t out_stride) {
    if constexpr (kUnpackBlocks<D>)
      block_rows<D, R>(x, cols, wrow, out, out_stride);
    else
      direct_rows<D, R>(x, cols, wrow, out, out_stride);
  }

  // Block types: each block of the weight row is unpacked once into scratch
  // and used by all R rows; the accumulation order is the one below for every R.
  template <DType D, int R>
  static void block_rows(const float* x, int cols, const void* wrow, float* out, int64_t out_stride) {
    constexpr int kBe = static_cast<int>(dtype_block_elems(D));
    constexpr size_t kBb = dtype_block_bytes(D);
    alignas(64) float buf[kBe];
    __m512 acc0[R], acc1[R];
    for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
    const auto* blk = static_cast<const unsigned char*>(wrow);
    for (int k0 = 0; k0 < cols; k0 += kBe, blk += kBb) {
      unpack_block<D>(blk, buf);
      for (int k = 0; k < kBe; k += 32) {
        // 256-bit loads matching the unpacker's 256-bit stores: a 512-bit load
        // spanning two fresh stores cannot be forwarded and stalls (10x slower Q4_0).
        const __m512 w0 = load_2x8(buf + k), w1 = load_2x8(buf + k + 16);
        for (int r = 0; r < R; ++r) {
          const float* xr = x + static_cast<int64_t>(r) * cols + k0 + k;
          acc0[r] = _mm512_fmadd_ps(_mm512_loadu_ps(xr), w0, acc0[r]);
          acc1[r] = _mm512_fmadd_ps(_mm512_loadu_ps(xr + 16), w1, acc1[r]);
        }
      }
    }
    for (int r = 0; r < R; ++r) out[r * out_stride] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[r], acc1[r]));
  }

  template <DType D, int R>
  static void direct_rows(const float* x, int cols, const void* wrow, float* out, int64_t out_stride) {
    __m512 acc0[R], acc1[R];
    for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 32 <= cols; k += 32) {
      __m512 w0 = load16<D>(wrow, k), w1 = load16<D>(wrow, k + 16);
      for (int r = 0; r < R; ++r) {
        const float* xr = x + static_cast<int64_t>(r) * cols;
        acc0[r] = _mm512_fmadd_ps(_mm512_loadu_ps(xr + k), w0, acc0[r]);
        acc1[r] = _mm512_fmadd_ps(_mm512_loadu_ps(xr + k + 16), w1, acc1[r]);
      }
    }
    for (int r = 0; r < R; ++r) {
      const float* xr = x + static_cast<int64_t>(r) * cols;
      float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0[r], acc1[r]));
      for (int kk = k; kk < cols; ++kk) s += xr[kk] * load1<D>(wrow, kk);
      out[r * out_stride] = s;
    }
  }
};

}  // namespace

void gemm_avx512(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end,
                 float* out, int64_t out_stride) {
  gemm_dispatch<Dot>(x, rows, w, n_begin, n_end, out, out_stride);
}

}  // namespace ghostd::runtime::cpu
