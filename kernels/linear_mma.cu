#include "kernels/linear_mma.cuh"

#include <algorithm>
#include <atomic>

#include "kernels/common.cuh"
#include "kernels/gemv.cuh"  // load_as_float (bias epilogue)

namespace ghostd::kernels {

namespace {

constexpr int kChunk = 32;      // k values per chunk: two mma steps
constexpr int kMaxSlices = 8;  // warps of one skinny block

std::atomic<int> g_target_warps{1024};
std::atomic<int> g_unroll{8};
std::atomic<int> g_skinny_rows{32};  // above: the tiled kernel

// d += a * b for one m16n8k16 tile, float32 accumulators.
__device__ __forceinline__ void mma(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                    uint32_t b0, uint32_t b1, __nv_bfloat16) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void mma(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                    uint32_t b0, uint32_t b1, __half) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// One 32-wide chunk for one m16n8 tile: lane (g = lane / 4, c = lane % 4)
// holds k values 8c .. 8c + 7 of A rows g and g + 8 (lo, hi) and of weight
// row g (w) as four pairs each. Pairs 0 and 1 feed the first mma step's k
// positions (2c, 2c + 1) and (2c + 8, 2c + 9), pairs 2 and 3 the second's:
// A and B see the same mapping, so the products are the right ones.
template <class T>
__device__ __forceinline__ void chunk_mma(float (&d)[4], const uint4& lo, const uint4& hi, const uint4& w) {
  mma(d, lo.x, hi.x, lo.y, hi.y, w.x, w.y, T{});
  mma(d, lo.z, hi.z, lo.w, hi.w, w.z, w.w, T{});
}

__device__ __forceinline__ int slice_begin(int s, int slices, int chunks) {
  return static_cast<int>(static_cast<int64_t>(s) * chunks / slices);
}

__device__ __forceinline__ float epilogue(float sum, const void* bias, runtime::DType bias_dtype, int64_t c) {
  return bias != nullptr ? sum + load_as_float(bias, bias_dtype, c) : sum;
}

// Skinny: up to 16 * MT rows per block row (8 * H per m16 tile: H = 1 feeds
// zeros for rows 8..15, which only affect those rows). Block = `slices`
// warps on one 8-column tile; warp s runs slice s straight from global
// memory, U chunks of loads ahead, and leaves its partial sums in shared
// memory for warp 0 to add in slice order.
template <class T, int MT, int H, int U>
__global__ void __launch_bounds__(kMaxSlices * 32)
    linear_skinny_kernel(const T* __restrict__ x, int rows, const T* __restrict__ w, int64_t n_out,
                         int k, int slices, const void* __restrict__ bias, runtime::DType bias_dtype,
                         float* __restrict__ out) {
  __shared__ float partial[kMaxSlices][MT][4][32];
  const int lane = threadIdx.x % 32, s = threadIdx.x / 32;
  const int g = lane / 4, c = lane % 4;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * 8;
  const int m0 = blockIdx.y * 16 * MT;
  const int chunks = k / kChunk;
  const int cb = slice_begin(s, slices, chunks), ce = slice_begin(s + 1, slices, chunks);

  const bool w_ok = n0 + g < n_out;
  const T* wr = w + (w_ok ? n0 + g : 0) * static_cast<int64_t>(k) + 8 * c;
  const T* ar[MT][2];
  bool a_ok[MT][2];
#pragma unroll
  for (int t = 0; t < MT; ++t)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = m0 + 16 * t + g + 8 * h;
      a_ok[t][h] = h < H && r < rows;
      ar[t][h] = x + static_cast<int64_t>(a_ok[t][h] ? r : 0) * k + 8 * c;
    }

  float acc[MT][4];
#pragma unroll
  for (int t = 0; t < MT; ++t)
#pragma unroll
    for (int q = 0; q < 4; ++q) acc[t][q] = 0.0f;

  const uint4 zero = make_uint4(0, 0, 0, 0);
  for (int ch = cb; ch < ce; ch += U) {
    uint4 wv[U], av[U][MT][H];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const bool in = ch + u < ce;
      const int64_t off = static_cast<int64_t>(ch + u) * kChunk;
      wv[u] = in && w_ok ? __ldg(reinterpret_cast<const uint4*>(wr + off)) : zero;
#pragma unroll
      for (int t = 0; t < MT; ++t)
#pragma unroll
        for (int h = 0; h < H; ++h)
          av[u][t][h] = in && a_ok[t][h] ? __ldg(reinterpret_cast<const uint4*>(ar[t][h] + off)) : zero;
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (ch + u >= ce) break;  // the same for the whole warp
#pragma unroll
      for (int t = 0; t < MT; ++t) chunk_mma<T>(acc[t], av[u][t][0], H == 2 ? av[u][t][H - 1] : zero, wv[u]);
    }
  }

#pragma unroll
  for (int t = 0; t < MT; ++t)
#pragma unroll
    for (int q = 0; q < 4; ++q) partial[s][t][q][lane] = acc[t][q];
  __syncthreads();
  if (s != 0) return;
#pragma unroll
  for (int t = 0; t < MT; ++t)
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      float sum = 0.0f;
      for (int i = 0; i < slices; ++i) sum += partial[i][t][q][lane];
      const int r = m0 + 16 * t + g + (q / 2) * 8;
      const int64_t col = n0 + 2 * c + q % 2;
      if (r < rows && col < n_out) out[static_cast<int64_t>(r) * n_out + col] = epilogue(sum, bias, bias_dtype, col);
    }
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const unsigned sa = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(sa), "l"(gmem), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Tiled: 64x64 tiles of four warps (32x32 each), one chunk per shared-memory
// stage, four stages in flight. Rows of a stage are 64 bytes with no padding:
// the 16-byte fragment loads of 8 lanes cover 128 contiguous bytes, free of
// bank conflicts. At each slice's end the slice sum is added to the total.
constexpr int kTileM = 64, kTileN = 64, kStages = 4;

template <class T>
__global__ void __launch_bounds__(128)
    linear_tiled_kernel(const T* __restrict__ x, int rows, const T* __restrict__ w, int64_t n_out,
                        int k, int slices, const void* __restrict__ bias, runtime::DType bias_dtype,
                        float* __restrict__ out) {
  __shared__ __align__(16) T as_all[kStages][kTileM][kChunk];
  __shared__ __align__(16) T bs_all[kStages][kTileN][kChunk];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int g = lane / 4, c = lane % 4;
  const int wm = warp / 2, wn = warp % 2;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kTileN;
  const int m0 = blockIdx.y * kTileM;
  const int chunks = k / kChunk;

  auto load = [&](int stage, int ch) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {  // 64 rows x 4 pieces of 16 bytes, 128 threads
      const int idx = tid + 128 * i, r = idx / 4, piece = (idx % 4) * 8;
      const int64_t off = static_cast<int64_t>(ch) * kChunk + piece;
      const bool a_ok = m0 + r < rows, b_ok = n0 + r < n_out;
      cp_async16(&as_all[stage][r][piece], a_ok ? x + static_cast<int64_t>(m0 + r) * k + off : x, a_ok);
      cp_async16(&bs_all[stage][r][piece], b_ok ? w + (n0 + r) * k + off : w, b_ok);
    }
  };

  float acc[2][4][4], total[2][4][4];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[i][j][q] = total[i][j][q] = 0.0f;

#pragma unroll
  for (int st = 0; st < kStages - 1; ++st) {
    if (st < chunks) load(st, st);
    cp_async_commit();
  }
  int slice = 0, slice_end = slice_begin(1, slices, chunks);
  for (int ch = 0; ch < chunks; ++ch) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // chunk ch landed for all; the stage of ch - 1 is free
    if (ch + kStages - 1 < chunks) load((ch + kStages - 1) % kStages, ch + kStages - 1);
    cp_async_commit();
    const int st = ch % kStages;
    uint4 a[2][2], b[4];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int h = 0; h < 2; ++h)
        a[i][h] = *reinterpret_cast<const uint4*>(&as_all[st][wm * 32 + i * 16 + g + 8 * h][8 * c]);
#pragma unroll
    for (int j = 0; j < 4; ++j) b[j] = *reinterpret_cast<const uint4*>(&bs_all[st][wn * 32 + j * 8 + g][8 * c]);
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) chunk_mma<T>(acc[i][j], a[i][0], a[i][1], b[j]);
    if (ch + 1 == slice_end) {
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
          for (int q = 0; q < 4; ++q) {
            total[i][j][q] += acc[i][j][q];
            acc[i][j][q] = 0.0f;
          }
      ++slice;
      slice_end = slice_begin(slice + 1, slices, chunks);
    }
  }
  cp_async_wait<0>();

#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int r = m0 + wm * 32 + i * 16 + g + (q / 2) * 8;
        const int64_t col = n0 + wn * 32 + j * 8 + 2 * c + q % 2;
        if (r < rows && col < n_out)
          out[static_cast<int64_t>(r) * n_out + col] = epilogue(total[i][j][q], bias, bias_dtype, col);
      }
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

template <class T, int MT, int H, int U>
cudaError_t launch_skinny(const void* x, int rows, const void* w, int64_t n, int k, int slices,
                          const void* bias, runtime::DType bias_dtype, float* out, cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>((n + 7) / 8), static_cast<unsigned>((rows + 16 * MT - 1) / (16 * MT)));
  linear_skinny_kernel<T, MT, H, U><<<grid, 32 * slices, 0, s>>>(static_cast<const T*>(x), rows,
                                                               static_cast<const T*>(w), n, k, slices,
                                                               bias, bias_dtype, out);
  return cudaGetLastError();
}

template <class T>
cudaError_t dispatch(const void* x, int rows, const void* w, int64_t n, int k, const void* bias,
                     runtime::DType bias_dtype, float* out, cudaStream_t s) {
  const int slices = linear_mma_slices(n, k);
  if (rows > g_skinny_rows.load(std::memory_order_relaxed)) {
    const dim3 grid(static_cast<unsigned>((n + kTileN - 1) / kTileN),
                    static_cast<unsigned>((rows + kTileM - 1) / kTileM));
    if (grid.y > 65535u) return cudaErrorNotSupported;
    linear_tiled_kernel<T><<<grid, 128, 0, s>>>(static_cast<const T*>(x), rows, static_cast<const T*>(w),
                                                n, k, slices, bias, bias_dtype, out);
    return cudaGetLastError();
  }
  // More than 32 rows: 32-row groups side by side, each streaming the weights.
  if (rows > 16) return launch_skinny<T, 2, 2, 4>(x, rows, w, n, k, slices, bias, bias_dtype, out, s);
  if (rows > 8) return launch_skinny<T, 1, 2, 4>(x, rows, w, n, k, slices, bias, bias_dtype, out, s);
  switch (g_unroll.load(std::memory_order_relaxed)) {
    case 4:
      return launch_skinny<T, 1, 1, 4>(x, rows, w, n, k, slices, bias, bias_dtype, out, s);
    case 16:
      return launch_skinny<T, 1, 1, 16>(x, rows, w, n, k, slices, bias, bias_dtype, out, s);
    default:
      return launch_skinny<T, 1, 1, 8>(x, rows, w, n, k, slices, bias, bias_dtype, out, s);
  }
}

}  // namespace

int linear_mma_slices(int64_t n, int k) {
  const int64_t tiles = (n + 7) / 8;
  const int64_t target = g_target_warps.load(std::memory_order_relaxed);
  int64_t s = (target + tiles - 1) / tiles;
  s = std::min<int64_t>(s, kMaxSlices);
  s = std::min<int64_t>(s, (k / kChunk) / 2);  // at least two chunks a slice
  return static_cast<int>(std::max<int64_t>(s, 1));
}

void linear_mma_tune(int target_warps, int unroll, int skinny_rows) {
  if (target_warps > 0) g_target_warps.store(target_warps, std::memory_order_relaxed);
  if (unroll == 4 || unroll == 8 || unroll == 16) g_unroll.store(unroll, std::memory_order_relaxed);
  if (skinny_rows >= 16) g_skinny_rows.store(skinny_rows, std::memory_order_relaxed);
}

cudaError_t linear_mma(const void* x16, int rows, const void* w, runtime::DType dtype, int64_t n,
                       int k, const void* bias, runtime::DType bias_dtype, float* out,
                       cudaStream_t stream) {
  if (rows < 0 || k <= 0 || k % kChunk != 0 || !aligned16(x16) || !aligned16(w)) return cudaErrorNotSupported;
  if (bias && bias_dtype != runtime::DType::kF32 && bias_dtype != runtime::DType::kF16 &&
      bias_dtype != runtime::DType::kBF16)
    return cudaErrorNotSupported;
  if (rows == 0 || n <= 0) return cudaSuccess;
  if ((n + 7) / 8 > 0x7fffffff) return cudaErrorNotSupported;
  switch (dtype) {
    case runtime::DType::kBF16:
      return dispatch<__nv_bfloat16>(x16, rows, w, n, k, bias, bias_dtype, out, stream);
    case runtime::DType::kF16:
      return dispatch<__half>(x16, rows, w, n, k, bias, bias_dtype, out, stream);
    default:
      return cudaErrorNotSupported;
  }
}

}  // namespace ghostd::kernels
