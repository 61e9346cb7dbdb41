// AVX-512 kernels (compiled with -mavx512f/bw/vl/dq; called after a CPU check):
// the shared direct-conversion GEMM (gemm_direct.h) on 16-lane vectors.
#include <immintrin.h>


#include "runtime/cpu/gemm.h"
#include "runtime/cpu/gemm_direct.h"

namespace ghostd::runtime::cpu {

namespace {

struct Avx512 {
  using Vec = __m512;
  static constexpr int kWidth = 16;
  // Passes of up to 8 x rows; 4 weight rows per tile up to 6 rows, 3 above
  // (R * N <= 24 accumulators of the 32 zmm registers). One accumulator per
  // output (not two) lets a register tile hold 24 outputs. A converted-panel
  // path (weights widened to float once per 24 rows, 4 x 6 tiles) measured
  // slower at every row count on this VM's Zen 5 (bench_cpu_gemm, Q8_0, 512
  // rows: 120-145 GFLOP/s against 136-155 on one thread, 180-193 against
  // 199-238 on two): the conversion rides along in otherwise idle slots.
  static constexpr int kPassRows = 8;
  static constexpr int tile_n(int rows) { return rows <= 6 ? 4 : 3; }

  static Vec zero() { return _mm512_setzero_ps(); }
  static Vec set1(float v) { return _mm512_set1_ps(v); }
  static Vec loadu(const float* p) { return _mm512_loadu_ps(p); }
  static Vec fmadd(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
  static float reduce(Vec v) { return _mm512_reduce_add_ps(v); }
  template <DType D>
  static Vec weights(const void* row, int k) {
    static_assert(D == DType::kF32 || D == DType::kBF16 || D == DType::kF16);
    if constexpr (D == DType::kF32) {
      return _mm512_loadu_ps(static_cast<const float*>(row) + k);
    } else {
      const __m256i h =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(row) + k));
      if constexpr (D == DType::kBF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
      else return _mm512_cvtph_ps(h);
    }
  }
  // 256-bit loads matching the unpacker's 256-bit stores: a 512-bit load
  // spanning two fresh stores cannot be forwarded and stalls.
  static Vec unpacked(const float* p) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_load_ps(p)), _mm256_load_ps(p + 8), 1);
  }
  static Vec q8(Vec d, const uint8_t* q) {
    return _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)))));
  }
};

}  // namespace

void gemm_avx512(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end,
                 float* out, int64_t out_stride) {
  gemm_dispatch<Avx512>(x, rows, w, n_begin, n_end, out, out_stride);
}

void gemm_avx512_k8(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end, float* out,
                        int64_t out_stride) {
  gemm_dispatch<Avx512, true>(x, rows, w, n_begin, n_end, out, out_stride);
}

bool gemm_q8_avx512(const Q8Rows& xq, const Weight& w, int64_t n_begin, int64_t n_end, float* out, int64_t out_stride) {
  return gemm_q8_dispatch(xq, w, n_begin, n_end, out, out_stride);
}

}  // namespace ghostd::runtime::cpu
