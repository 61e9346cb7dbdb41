// The direct-conversion GEMM of the AVX2 and AVX-512 kernels, written once
// over an ISA type V: gemm_avx2.cpp instantiates it with its Avx2 and
// gemm_avx512.cpp with its Avx512, each file compiled for its ISA.
// Everything here is in an anonymous namespace (as in gemm_tiling.h), so no
// instantiation built for one ISA can stand in for the other's at link time.
//
// V provides: Vec and kWidth (floats per vector), zero, loadu (floats),
// fmadd, reduce (the horizontal sum), weights<D> (kWidth weights of a row
// at element k, as floats), unpacked (kWidth floats just stored by
// unpack_block), q8 (kWidth int8 of a Q8_0 block times its scale), set1,
// kPassRows (x rows per pass) and tile_n(R) (weight rows per tile of R x
// rows: R * N accumulators, N weight vectors and one x vector must fit the
// register file).
//
// The operation order (see gemm.h): each output is one kWidth-lane
// accumulator over k in steps of kWidth, then V::reduce, then the scalar
// tail (cols % kWidth) in k order, whatever tile computes it.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "runtime/cpu/gemm.h"
#include "runtime/cpu/gemm_kquant_int8.h"
#include "runtime/cpu/gemm_tiling.h"

namespace ghostd::runtime::cpu {
namespace {

// How many tiles ahead the weight prefetch runs.
constexpr int kPrefetchTiles = 2;

// R x rows against N weight rows, the weights converted on the fly once for
// all R rows: R x N independent FMA chains, each weight vector feeding R
// FMAs and each x vector N.
template <class V, DType D, int R, int N>
void direct_tile(const float* x, int cols, const void* const* wrows, float* out, int64_t out_stride) {
  using Vec = typename V::Vec;
  constexpr int W = V::kWidth;
  Vec acc[R][N];
  for (int r = 0; r < R; ++r)
    for (int n = 0; n < N; ++n) acc[r][n] = V::zero();
  auto step = [&](const Vec (&wv)[N], int k) {
    for (int r = 0; r < R; ++r) {
      const Vec xv = V::loadu(x + static_cast<int64_t>(r) * cols + k);
      for (int n = 0; n < N; ++n) acc[r][n] = V::fmadd(xv, wv[n], acc[r][n]);
    }
  };
  // The N rows are read side by side, which the hardware prefetcher does not
  // follow on short rows (1.6 KB at hidden 1536: the AVX-512 4-row tile read
  // half as fast as one row at a time); so every outer step also prefetches
  // its share of the N rows one tile further on (rows follow each other in
  // memory) into L2. Into L1 and one tile ahead, fewer lines are in flight:
  // on an AMD EPYC (Zen 4) batch 1 read 11-14 GB/s that way and 15-17 GB/s
  // this way, against a 23 GB/s probe (bench_cpu_gemm, Q8_0, one thread).
  const char* next = static_cast<const char*>(wrows[N - 1]) + (kPrefetchTiles * N - N + 1) * dtype_bytes(D, cols);
  auto prefetch = [&](int steps) {
    const size_t share = (static_cast<size_t>(N) * dtype_bytes(D, cols) / static_cast<size_t>(steps) + 63) / 64 * 64;
    return [&next, share] {
      for (size_t i = 0; i < share; i += 64) _mm_prefetch(next + i, _MM_HINT_T1);
      next += share;
    };
  };
  int kmain = cols / W * W;
  if constexpr (kUnpackBlocks<D>) {
    constexpr int kBe = static_cast<int>(dtype_block_elems(D));
    constexpr size_t kBb = dtype_block_bytes(D);
    alignas(64) float buf[N][kBe];
    const auto ahead = prefetch(cols / kBe);
    for (int k0 = 0; k0 < cols; k0 += kBe) {
      ahead();
      for (int n = 0; n < N; ++n)
        unpack_block<D>(static_cast<const unsigned char*>(wrows[n]) + static_cast<size_t>(k0 / kBe) * kBb, buf[n]);
      for (int k = 0; k < kBe; k += W) {
        Vec wv[N];
        for (int n = 0; n < N; ++n) wv[n] = V::unpacked(buf[n] + k);
        step(wv, k0 + k);
      }
    }
    kmain = cols;
  } else if constexpr (D == DType::kQ8_0) {
    // One scale per 32-value block, read once for its steps.
    const auto ahead = prefetch(cols / 32);
    for (int k0 = 0; k0 < cols; k0 += 32) {
      ahead();
      Vec d[N];
      const uint8_t* blk[N];
      for (int n = 0; n < N; ++n) {
        blk[n] = static_cast<const uint8_t*>(wrows[n]) + (k0 / 32) * 34;
        uint16_t d16;
        std::memcpy(&d16, blk[n], 2);
        d[n] = V::set1(_cvtsh_ss(d16));
      }
      for (int h = 0; h < 32; h += W) {
        Vec wv[N];
        for (int n = 0; n < N; ++n) wv[n] = V::q8(d[n], blk[n] + 2 + h);
        step(wv, k0 + h);
      }
    }
  } else {
    const auto ahead = prefetch(std::max(1, kmain / W));
    for (int k = 0; k < kmain; k += W) {
      ahead();
      Vec wv[N];
      for (int n = 0; n < N; ++n) wv[n] = V::template weights<D>(wrows[n], k);
      step(wv, k);
    }
  }
  for (int r = 0; r < R; ++r) {
    const float* xr = x + static_cast<int64_t>(r) * cols;
    for (int n = 0; n < N; ++n) {
      float s = V::reduce(acc[r][n]);
      for (int kk = kmain; kk < cols; ++kk) s += xr[kk] * load1<D>(wrows[n], kk);
      out[r * out_stride + n] = s;
    }
  }
}

// x rows times weight rows taken N at a time by direct_tile, the last few
// one by one.
template <class V, DType D, int R, int N>
void direct_rows(const float* x, const Weight& w, int64_t n_begin, int64_t n_end, float* out, int64_t out_stride) {
  const int cols = static_cast<int>(w.cols);
  int64_t n = n_begin;
  for (; n + N <= n_end; n += N) {
    const void* rows[N];
    for (int j = 0; j < N; ++j) rows[j] = row_ptr<D>(w, n + j);
    direct_tile<V, D, R, N>(x, cols, rows, out + n, out_stride);
  }
  for (; n < n_end; ++n) {
    const void* row = row_ptr<D>(w, n);
    direct_tile<V, D, R, 1>(x, cols, &row, out + n, out_stride);
  }
}

// A pass of `rows` (1 .. V::kPassRows) x rows, converting the weights once
// for all of them.
template <class V, DType D, int R = 1>
void direct_pass(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end, float* out,
                 int64_t out_stride) {
  if constexpr (R < V::kPassRows) {
    if (rows > R) return direct_pass<V, D, R + 1>(x, rows, w, n_begin, n_end, out, out_stride);
  }
  direct_rows<V, D, R, V::tile_n(R)>(x, w, n_begin, n_end, out, out_stride);
}

// Blocked so that weights are read from memory about once per 64 x rows:
// for each block of 64 x rows, each group of 12 weight rows (a multiple of
// both tile widths) stays in L1/L2 while the block's passes use it.
template <class V, DType D>
void gemm_direct(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end, float* out,
                 int64_t out_stride) {
  constexpr int kBlockM = 64;
  constexpr int64_t kGroupN = 12;
  constexpr int kPass = V::kPassRows;
  for (int m0 = 0; m0 < rows; m0 += kBlockM) {
    const int m1 = std::min(rows, m0 + kBlockM);
    for (int64_t n = n_begin; n < n_end; n += kGroupN) {
      const int64_t ne = std::min(n_end, n + kGroupN);
      for (int r = m0; r < m1; r += kPass)
        direct_pass<V, D>(x + static_cast<int64_t>(r) * w.cols, std::min(kPass, m1 - r), w, n, ne,
                          out + r * out_stride, out_stride);
    }
  }
}

// The CPU's GEMM for every dtype: the direct kernel above, except Q4_K and
// Q6_K, which keep their factored AVX2 kernels (one order for every R); with
// kInt8K, Q4_K, Q5_K and Q6_K take the integer path of gemm_kquant_int8.h.
template <class V, bool kInt8K = false>
void gemm_dispatch(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end, float* out,
                   int64_t out_stride) {
  switch (w.dtype) {
    case DType::kF32: return gemm_direct<V, DType::kF32>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kBF16: return gemm_direct<V, DType::kBF16>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kF16: return gemm_direct<V, DType::kF16>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ8_0: return gemm_direct<V, DType::kQ8_0>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ4_0: return gemm_direct<V, DType::kQ4_0>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ4_1: return gemm_direct<V, DType::kQ4_1>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ5_0: return gemm_direct<V, DType::kQ5_0>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ5_1: return gemm_direct<V, DType::kQ5_1>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ5_K:
      if constexpr (kInt8K) return gemm_kquant_int8<DType::kQ5_K>(x, rows, w, n_begin, n_end, out, out_stride);
      return gemm_direct<V, DType::kQ5_K>(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ4_K:
      if constexpr (kInt8K) return gemm_kquant_int8<DType::kQ4_K>(x, rows, w, n_begin, n_end, out, out_stride);
      return gemm_q4k_avx2(x, rows, w, n_begin, n_end, out, out_stride);
    case DType::kQ6_K:
      if constexpr (kInt8K) return gemm_kquant_int8<DType::kQ6_K>(x, rows, w, n_begin, n_end, out, out_stride);
      return gemm_tiled<Q6kDot, DType::kQ6_K>(x, rows, w, n_begin, n_end, out, out_stride);
  }
}

}  // namespace
}  // namespace ghostd::runtime::cpu
