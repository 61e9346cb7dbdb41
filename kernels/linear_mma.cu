#include "kernels/linear_mma.cuh"

#include "kernels/common.cuh"
#include "kernels/gemv.cuh"  // load_as_float (bias epilogue)

namespace ghostd::kernels {

namespace {

// 16 bytes global -> shared, asynchronous; src_size 0 fills zeros and reads
// nothing (rows past the end, columns past k).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int src_size = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_size));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3,
                                            const void* smem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(s));
}

// d += a * b for one m16n8k16 tile, float32 accumulators.
__device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                    __nv_bfloat16) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                    __half) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// A block computes a BM x BN tile of out with (BM / WM) x (BN / WN) warps,
// each a WM x WN sub-tile of m16n8 mma tiles; k moves through shared memory
// in BK-wide stages, STAGES deep (cp.async). The configurations differ in
// tiling and staging only: each output element still sees the same mma
// steps in the same order.
template <class T, int BM, int BN, int BK, int WM, int WN, int STAGES>
struct Tile {
  static constexpr int kWarpsM = BM / WM, kWarpsN = BN / WN;
  static constexpr int kThreads = kWarpsM * kWarpsN * 32;
  static constexpr int kLd = BK + 8;  // 16 bytes of padding: ldmatrix rows on distinct banks
  static constexpr int kMt = WM / 16, kNt = WN / 8;
  static constexpr size_t kSmem = size_t(STAGES) * (BM + BN) * kLd * sizeof(T);
  static_assert(WM % 16 == 0 && WN % 16 == 0 && BK % 16 == 0 && STAGES >= 2);
  static_assert(kSmem <= 48 * 1024, "dynamic shared memory above 48 KiB needs an opt-in");
};

template <class T, int BM, int BN, int BK, int WM, int WN, int STAGES>
__global__ void __launch_bounds__(Tile<T, BM, BN, BK, WM, WN, STAGES>::kThreads)
    linear_mma_kernel(const T* __restrict__ x, int rows, const T* __restrict__ w, int64_t n_out,
                      int k, const void* __restrict__ bias, runtime::DType bias_dtype,
                      float* __restrict__ out) {
  using C = Tile<T, BM, BN, BK, WM, WN, STAGES>;
  constexpr int kLd = C::kLd, kMt = C::kMt, kNt = C::kNt, kChunks = BK / 8;
  extern __shared__ uint4 smem_raw[];
  T* const as_all = reinterpret_cast<T*>(smem_raw);  // [STAGES][BM][kLd]
  T* const bs_all = as_all + STAGES * BM * kLd;       // [STAGES][BN][kLd]

  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int wm = warp / C::kWarpsN, wn = warp % C::kWarpsN;
  const int64_t n0 = int64_t(blockIdx.x) * BN;
  const int m0 = blockIdx.y * BM;
  const int ktiles = (k + BK - 1) / BK;

  auto load_stage = [&](int stage, int kt) {
    const int kbase = kt * BK;
    T* as = as_all + stage * BM * kLd;
    T* bs = bs_all + stage * BN * kLd;
    for (int c = tid; c < BM * kChunks; c += C::kThreads) {
      const int r = c / kChunks, kc = (c % kChunks) * 8;
      const bool ok = m0 + r < rows && kbase + kc < k;
      cp_async16(as + r * kLd + kc, ok ? x + int64_t(m0 + r) * k + kbase + kc : x, ok);
    }
    for (int c = tid; c < BN * kChunks; c += C::kThreads) {
      const int r = c / kChunks, kc = (c % kChunks) * 8;
      const bool ok = n0 + r < n_out && kbase + kc < k;
      cp_async16(bs + r * kLd + kc, ok ? w + (n0 + r) * k + kbase + kc : w, ok);
    }
  };

  float acc[kMt][kNt][4];
#pragma unroll
  for (int i = 0; i < kMt; ++i)
#pragma unroll
    for (int j = 0; j < kNt; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.0f;

#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < ktiles) load_stage(s, s);
    cp_async_commit();
  }
  for (int kt = 0; kt < ktiles; ++kt) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();  // stage kt landed for every thread; stage kt - 1 is free
    if (kt + STAGES - 1 < ktiles) load_stage((kt + STAGES - 1) % STAGES, kt + STAGES - 1);
    cp_async_commit();
    const T* as = as_all + (kt % STAGES) * BM * kLd + (wm * WM) * kLd;
    const T* bs = bs_all + (kt % STAGES) * BN * kLd + (wn * WN) * kLd;
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      if (kt * BK + kk >= k) break;  // the same for the whole block
      uint32_t a[kMt][4], b[kNt][2];
#pragma unroll
      for (int i = 0; i < kMt; ++i)  // rows lane % 16, k half lane / 16
        ldmatrix_x4(a[i][0], a[i][1], a[i][2], a[i][3],
                    as + (i * 16 + lane % 16) * kLd + kk + (lane / 16) * 8);
#pragma unroll
      for (int j = 0; j < kNt; j += 2)  // two n8 tiles: n = lane % 8 + (lane / 16) * 8, k half (lane / 8) % 2
        ldmatrix_x4(b[j][0], b[j][1], b[j + 1][0], b[j + 1][1],
                    bs + (j * 8 + lane % 8 + (lane / 16) * 8) * kLd + kk + ((lane / 8) % 2) * 8);
#pragma unroll
      for (int i = 0; i < kMt; ++i)
#pragma unroll
        for (int j = 0; j < kNt; ++j) mma(acc[i][j], a[i], b[j], T{});
    }
  }
  cp_async_wait<0>();

  // Accumulator q of tile (i, j): row lane / 4 (+ 8 for q >= 2), column
  // (lane % 4) * 2 + q % 2. The bias comes after the sum, as in the gemv.
#pragma unroll
  for (int i = 0; i < kMt; ++i)
#pragma unroll
    for (int j = 0; j < kNt; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int r = m0 + wm * WM + i * 16 + lane / 4 + (q / 2) * 8;
        const int64_t c = n0 + wn * WN + j * 8 + (lane % 4) * 2 + q % 2;
        if (r < rows && c < n_out) {
          const float s = acc[i][j][q];
          out[int64_t(r) * n_out + c] = bias != nullptr ? s + load_as_float(bias, bias_dtype, c) : s;
        }
      }
}

template <class T, int BM, int BN, int BK, int WM, int WN, int STAGES>
cudaError_t launch(const void* x, int rows, const void* w, int64_t n, int k, const void* bias,
                   runtime::DType bias_dtype, float* out, cudaStream_t s) {
  using C = Tile<T, BM, BN, BK, WM, WN, STAGES>;
  const dim3 grid(static_cast<unsigned>((n + BN - 1) / BN), static_cast<unsigned>((rows + BM - 1) / BM));
  if (grid.x > 0x7fffffffu || grid.y > 65535u) return cudaErrorNotSupported;
  linear_mma_kernel<T, BM, BN, BK, WM, WN, STAGES><<<grid, C::kThreads, C::kSmem, s>>>(
      static_cast<const T*>(x), rows, static_cast<const T*>(w), n, k, bias, bias_dtype, out);
  return cudaGetLastError();
}

// Up to kSmallRows rows (decode, verify, keystrokes): one warp per 16x16
// tile and 128-wide stages four deep, so a row's weights stream through
// many blocks with much in flight. Above: 64x128 tiles of four warps.
constexpr int kSmallRows = 32;

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

template <class T>
cudaError_t dispatch_rows(const void* x, int rows, const void* w, int64_t n, int k, const void* bias,
                          runtime::DType bias_dtype, float* out, cudaStream_t s) {
  if (rows <= kSmallRows) return launch<T, 16, 16, 128, 16, 16, 4>(x, rows, w, n, k, bias, bias_dtype, out, s);
  return launch<T, 64, 128, 32, 32, 64, 3>(x, rows, w, n, k, bias, bias_dtype, out, s);
}

}  // namespace

const char* linear_mma_config(int rows) {
  return rows <= kSmallRows ? "16x16x128, 1 warp, 4 stages" : "64x128x32, 4 warps, 3 stages";
}

cudaError_t linear_mma(const void* x16, int rows, const void* w, runtime::DType dtype, int64_t n,
                       int k, const void* bias, runtime::DType bias_dtype, float* out,
                       cudaStream_t stream) {
  if (rows < 0 || k <= 0 || k % 16 != 0 || !aligned16(x16) || !aligned16(w)) return cudaErrorNotSupported;
  if (bias && bias_dtype != runtime::DType::kF32 && bias_dtype != runtime::DType::kF16 &&
      bias_dtype != runtime::DType::kBF16)
    return cudaErrorNotSupported;
  if (rows == 0 || n <= 0) return cudaSuccess;
  switch (dtype) {
    case runtime::DType::kBF16:
      return dispatch_rows<__nv_bfloat16>(x16, rows, w, n, k, bias, bias_dtype, out, stream);
    case runtime::DType::kF16:
      return dispatch_rows<__half>(x16, rows, w, n, k, bias, bias_dtype, out, stream);
    default:
      return cudaErrorNotSupported;
  }
}

}  // namespace ghostd::kernels
