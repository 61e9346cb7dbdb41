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

#include "runtime/core/backend.h"
#include "runtime/core/quant_blocks.h"

namespace ghostd::runtime::cpu {
namespace {

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

template <class Dot>
void gemm_dispatch(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end,
                   float* out, int64_t out_stride) {
  switch (w.dtype) {
    case DType::kF32:
      return gemm_tiled<Dot, DType::kF32>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kBF16:
      return gemm_tiled<Dot, DType::kBF16>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kF16:
      return gemm_tiled<Dot, DType::kF16>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ8_0:
      return gemm_tiled<Dot, DType::kQ8_0>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ4_0:
      return gemm_tiled<Dot, DType::kQ4_0>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ4_1:
      return gemm_tiled<Dot, DType::kQ4_1>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ5_0:
      return gemm_tiled<Dot, DType::kQ5_0>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ5_1:
      return gemm_tiled<Dot, DType::kQ5_1>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ4_K:
      return gemm_tiled<Dot, DType::kQ4_K>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ5_K:
      return gemm_tiled<Dot, DType::kQ5_K>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ6_K:
      return gemm_tiled<Dot, DType::kQ6_K>(x, rows, w, n_begin, n_end, out, out_stride);
  }
}

}  // namespace
}  // namespace ghostd::runtime::cpu
