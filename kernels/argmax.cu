#include "kernels/argmax.cuh"
#include "kernels/common.cuh"

namespace ghostd::kernels {

namespace {

constexpr int kArgmaxThreads = 256;

// (value, index) with "better" = larger value, then smaller index; index -1
// is "nothing yet" (NaN and padding). The order of combination cannot change
// the result: the rule is a total order on non-NaN (value, index) pairs.
struct Best {
  float v;
  int32_t i;
};

__device__ __forceinline__ Best better(Best a, Best b) {
  if (a.i < 0) return b;
  if (b.i < 0) return a;
  if (b.v > a.v || (b.v == a.v && b.i < a.i)) return b;
  return a;
}

__global__ void __launch_bounds__(kArgmaxThreads)
    argmax_rows_kernel(const float* __restrict__ x, int cols, int32_t* __restrict__ out) {
  const float* row = x + static_cast<int64_t>(blockIdx.x) * cols;
  Best b{0.0f, -1};
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    const float v = row[c];
    if (v == v) b = better(b, Best{v, c});
  }
  for (int off = kWarp / 2; off > 0; off /= 2) {
    Best o{__shfl_down_sync(0xffffffffu, b.v, off), __shfl_down_sync(0xffffffffu, b.i, off)};
    b = better(b, o);
  }
  __shared__ Best warp_best[kArgmaxThreads / kWarp];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  if (lane == 0) warp_best[warp] = b;
  __syncthreads();
  if (threadIdx.x == 0) {
    Best r = warp_best[0];
    for (int w = 1; w < kArgmaxThreads / kWarp; ++w) r = better(r, warp_best[w]);
    out[blockIdx.x] = r.i < 0 ? 0 : r.i;
  }
}

}  // namespace

cudaError_t argmax_rows(const float* x, int rows, int cols, int32_t* out, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  if (cols <= 0) return cudaErrorInvalidValue;
  argmax_rows_kernel<<<rows, kArgmaxThreads, 0, stream>>>(x, cols, out);
  return cudaGetLastError();
}

}  // namespace ghostd::kernels
