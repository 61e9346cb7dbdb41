// Greedy token choice on the device: the argmax of each logits row, so a
// greedy step downloads token ids instead of vocabulary-sized rows.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace ghostd::kernels {

// out[r] = index of the largest value of row r of x ([rows, cols]); the first
// on ties; NaN never chosen (0 for a row of NaN): runtime::argmax's rule.
cudaError_t argmax_rows(const float* x, int rows, int cols, int32_t* out, cudaStream_t stream);

}  // namespace ghostd::kernels
