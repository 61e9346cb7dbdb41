// Matrix-vector/matrix-matrix products with weights in their stored dtype,
// one implementation per instruction set, picked once at run time.
//
// Exactness contract: for a given implementation, each output element is
// computed with the same operation order whatever the number of rows in the
// call and whatever the split of output columns across threads, so batching
// never changes a result bit (DESIGN.md invariant 6).
#pragma once

#include <cstdint>

#include "runtime/core/backend.h"

namespace ghostd::runtime::cpu {

// out[r * out_stride + n] = dot(x[r * cols ..], w row n) for r < rows and
// n in [n_begin, n_end). Bias is added by the caller.
using GemmFn = void (*)(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end,
                        float* out, int64_t out_stride);

void gemm_generic(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end,
                  float* out, int64_t out_stride);
void gemm_avx2(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end,
               float* out, int64_t out_stride);
void gemm_avx512(const float* x, int rows, const Weight& w, int64_t n_begin, int64_t n_end,
                 float* out, int64_t out_stride);

// Dot product of two float vectors (attention scores), same per-ISA split.
using DotFn = float (*)(const float* a, const float* b, int n);
// y[i] += a * x[i] (attention value accumulation).
using AxpyFn = void (*)(float a, const float* x, float* y, int n);

float dot_generic(const float* a, const float* b, int n);
float dot_avx2(const float* a, const float* b, int n);
void axpy_generic(float a, const float* x, float* y, int n);
void axpy_avx2(float a, const float* x, float* y, int n);

struct Kernels {
  GemmFn gemm;
  DotFn dot;
  AxpyFn axpy;
  const char* isa;
};

// The best kernels this CPU runs; GHOSTD_CPU_ISA=generic|avx2|avx512 overrides.
Kernels select_kernels();

}  // namespace ghostd::runtime::cpu
