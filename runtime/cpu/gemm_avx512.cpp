// AVX-512 kernels (compiled with -mavx512f/bw/vl/dq; called after a CPU check).
#include <immintrin.h>

#include <algorithm>
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

// The AVX-512 operation order, for every path below (see gemm.h): each output
// is one 16-lane accumulator over k in steps of 16, then
// _mm512_reduce_add_ps, then the scalar tail (cols % 16) in k order. One
// accumulator per output (not two) lets a register tile hold 24 outputs.

// R x rows against N weight rows, the weights converted on the fly: the
// decode path (few rows, memory-bound), N rows at once for independent FMA
// chains and parallel memory streams.
template <DType D, int R, int N>
void direct_tile(const float* x, int cols, const void* const* wrows, float* out, int64_t out_stride) {
  __m512 acc[R][N];
  for (int r = 0; r < R; ++r)
    for (int n = 0; n < N; ++n) acc[r][n] = _mm512_setzero_ps();
  auto step = [&](const __m512 (&wv)[N], int k) {
    for (int r = 0; r < R; ++r) {
      const __m512 xv = _mm512_loadu_ps(x + static_cast<int64_t>(r) * cols + k);
      for (int n = 0; n < N; ++n) acc[r][n] = _mm512_fmadd_ps(xv, wv[n], acc[r][n]);
    }
  };
  int kmain = cols / 16 * 16;
  if constexpr (kUnpackBlocks<D>) {
    constexpr int kBe = static_cast<int>(dtype_block_elems(D));
    constexpr size_t kBb = dtype_block_bytes(D);
    alignas(64) float buf[N][kBe];
    for (int k0 = 0; k0 < cols; k0 += kBe) {
      for (int n = 0; n < N; ++n)
        unpack_block<D>(static_cast<const unsigned char*>(wrows[n]) + static_cast<size_t>(k0 / kBe) * kBb, buf[n]);
      for (int k = 0; k < kBe; k += 16) {
        // 256-bit loads matching the unpacker's 256-bit stores: a 512-bit load
        // spanning two fresh stores cannot be forwarded and stalls.
        __m512 wv[N];
        for (int n = 0; n < N; ++n) wv[n] = load_2x8(buf[n] + k);
        step(wv, k0 + k);
      }
    }
    kmain = cols;
  } else if constexpr (D == DType::kQ8_0) {
    // One scale per 32-value block, read once for its two steps.
    for (int k0 = 0; k0 < cols; k0 += 32) {
      __m512 d[N];
      const uint8_t* blk[N];
      for (int n = 0; n < N; ++n) {
        blk[n] = static_cast<const uint8_t*>(wrows[n]) + (k0 / 32) * 34;
        uint16_t d16;
        std::memcpy(&d16, blk[n], 2);
        d[n] = _mm512_set1_ps(_cvtsh_ss(d16));
      }
      for (int h = 0; h < 32; h += 16) {
        __m512 wv[N];
        for (int n = 0; n < N; ++n) {
          const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[n] + 2 + h));
          wv[n] = _mm512_mul_ps(d[n], _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)));
        }
        step(wv, k0 + h);
      }
    }
  } else {
    for (int k = 0; k < kmain; k += 16) {
      __m512 wv[N];
      for (int n = 0; n < N; ++n) wv[n] = load16<D>(wrows[n], k);
      step(wv, k);
    }
  }
  for (int r = 0; r < R; ++r) {
    const float* xr = x + static_cast<int64_t>(r) * cols;
    for (int n = 0; n < N; ++n) {
      float s = _mm512_reduce_add_ps(acc[r][n]);
      for (int kk = kmain; kk < cols; ++kk) s += xr[kk] * load1<D>(wrows[n], kk);
      out[r * out_stride + n] = s;
    }
  }
}

// PanelGemm's vector operations: the order above.
struct V512 {
  using vec = __m512;
  // 8 x 3 tile: 24 accumulators; per step 8 x loads and 3 weight loads feed
  // 24 FMAs. Rows are cut into 512-value chunks so a tile's x rows (16 KB) and
  // the panel's chunk (24 KB) stay in L1.
  static constexpr int kLanes = 16, kAccs = 1, kTileRows = 8, kTileCols = 3;
  static constexpr int kWholeK = 512, kChunkK = 512;
  static vec zero() { return _mm512_setzero_ps(); }
  static vec load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, vec v) { _mm512_storeu_ps(p, v); }
  static vec fma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
  static float finish(const vec (&a)[1]) { return _mm512_reduce_add_ps(a[0]); }
  template <DType D>
  static void widen(const void* row, int k, float* dst) {
    _mm512_storeu_ps(dst, load16<D>(row, k));
  }
};

// Weight rows taken 4 at a time by direct_tile.
constexpr int kDirectRows = 4;

template <DType D, int R>
void direct_rows(const float* x, const Weight& w, int64_t n_begin, int64_t n_end, float* out, int64_t out_stride) {
  const int cols = static_cast<int>(w.cols);
  for (int64_t n = n_begin; n < n_end; n += kDirectRows) {
    const void* rows[kDirectRows];
    const int nn = static_cast<int>(std::min<int64_t>(kDirectRows, n_end - n));
    for (int j = 0; j < nn; ++j) rows[j] = row_ptr<D>(w, n + j);
    float* o = out + n;
    switch (nn) {
      case 4: direct_tile<D, R, 4>(x, cols, rows, o, out_stride); break;
      case 3: direct_tile<D, R, 3>(x, cols, rows, o, out_stride); break;
      case 2: direct_tile<D, R, 2>(x, cols, rows, o, out_stride); break;
      default: direct_tile<D, R, 1>(x, cols, rows, o, out_stride); break;
    }
  }
}

template <DType D>
void gemm512(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end, float* out,
             int64_t out_stride) {
  static_assert(kPanelMinRows == 4, "direct_rows covers 1 to 3 rows");
  switch (rows) {
    case 0: return;
    case 1: return direct_rows<D, 1>(x, w, n_begin, n_end, out, out_stride);
    case 2: return direct_rows<D, 2>(x, w, n_begin, n_end, out, out_stride);
    case 3: return direct_rows<D, 3>(x, w, n_begin, n_end, out, out_stride);
    default: return PanelGemm<V512>::template run<D>(x, rows, w, n_begin, n_end, out, out_stride);
  }
}

}  // namespace

void gemm_avx512(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end,
                 float* out, int64_t out_stride) {
  switch (w.dtype) {
    case DType::kF32: return gemm512<DType::kF32>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kBF16: return gemm512<DType::kBF16>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kF16: return gemm512<DType::kF16>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ8_0: return gemm512<DType::kQ8_0>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ4_0: return gemm512<DType::kQ4_0>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ4_1: return gemm512<DType::kQ4_1>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ5_0: return gemm512<DType::kQ5_0>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ5_1: return gemm512<DType::kQ5_1>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ5_K: return gemm512<DType::kQ5_K>(x, rows, w, n_begin, n_end, out, out_stride);
    // Q4_K and Q6_K keep their factored AVX2 kernels (one order for every R).
    case DType::kQ4_K: return gemm_q4k_avx2(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ6_K: return gemm_tiled<Q6kDot, DType::kQ6_K>(x, rows, w, n_begin, n_end, out, out_stride);
  }
}

}  // namespace ghostd::runtime::cpu
