// The integer kernels built with AVX512-VNNI as well (compiled with the
// AVX-512 flags and -mavx512vnni; called after a CPU check): the 32-value
// block types take their 512-bit dpbusd step (gemm_block32_int8.h), the
// K-quants dpwssd for madd + add (gemm_kquant_int8.h). The bits are those of
// the AVX2 and AVX-512 builds.
#include "runtime/cpu/gemm.h"
#include "runtime/cpu/gemm_kquant_int8.h"

namespace ghostd::runtime::cpu {

bool gemm_q8_avx512vnni(const Q8Rows& xq, const Weight& w, int64_t n_begin, int64_t n_end, float* out,
                        int64_t out_stride) {
  return gemm_q8_dispatch(xq, w, n_begin, n_end, out, out_stride);
}

}  // namespace ghostd::runtime::cpu
