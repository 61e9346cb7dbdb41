// The CUDA backend: the Backend ops (runtime/core/backend.h) on one GPU, with
// cuBLAS for large matrix products and the kernels in kernels/ for the rest.
// This header needs no CUDA headers, so any target may include it; it is
// only compiled and linked when GHOSTD_HAVE_CUDA is defined.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "runtime/core/backend.h"
#include "runtime/core/result.h"

namespace ghostd::runtime {

// Visible CUDA devices; 0 when there is no device or no usable driver.
int cuda_device_count();

struct CudaDeviceInfo {
  std::string name;
  int multiprocessors = 0;
  size_t total_memory = 0;
  double peak_bandwidth_gbs = 0;  // DRAM clock x bus width x 2 (DDR), as reported
};

// What the benchmarks and logs need to know about `device`.
Result<CudaDeviceInfo> cuda_device_info(int device);

// A backend on `device`, or an Error naming why none could be made (no such
// device, driver or cuBLAS failure). Weights are copied to the device by
// load_weight as stored: block-quantized ones (Q4_0 .. Q6_K, Q8_0) keep their
// blocks and dtype and are decoded inside matmul and embedding
// (runtime/cuda/quant_weights.h).
Result<std::unique_ptr<Backend>> make_cuda_backend(int device = 0);

}  // namespace ghostd::runtime
