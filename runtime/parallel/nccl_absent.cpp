// Builds without CUDA have no NCCL; runtime/cuda/nccl_communicator.cpp
// defines these in CUDA builds.
#include "runtime/parallel/communicator.h"

#ifndef GHOSTD_HAVE_CUDA

namespace ghostd::runtime {

bool nccl_available() { return false; }

Result<std::vector<std::unique_ptr<Communicator>>> make_nccl_communicators(std::span<const int>, std::chrono::milliseconds) {
  return Error{"tensor parallelism on GPUs needs the CUDA backend and NCCL; this build has no CUDA"};
}

}  // namespace ghostd::runtime

#endif
