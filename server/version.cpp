#include "server/version.h"

#include <string>

#include "runtime/cpu/gemm.h"
#include "runtime/parallel/communicator.h"

namespace ghostd::server {

const char* version() { return "0.1.0"; }

std::string build_description() {
  std::string s = std::string("ghostd ") + version() + "\n";
#if defined(GHOSTD_HAVE_CUDA)
  s += std::string("CUDA backend: built (CUDA ") + GHOSTD_CUDA_VERSION + ", cuBLAS), for architectures " +
       GHOSTD_CUDA_ARCHS + "\n";
#else
  s += "CUDA backend: not built (configure with GHOSTD_CUDA=ON or AUTO where nvcc and cuBLAS are)\n";
#endif
  s += runtime::nccl_available()
           ? "NCCL: built (tensor parallelism over GPUs: --tensor-parallel, --devices)\n"
           : "NCCL: not built (tensor parallelism runs on CPU ranks only)\n";
  s += std::string("CPU kernels: ") + runtime::cpu::select_kernels().isa +
       " on this machine (built: generic, avx2, avx512; GHOSTD_CPU_ISA overrides)\n";
  return s;
}

}  // namespace ghostd::server
