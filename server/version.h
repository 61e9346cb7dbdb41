#pragma once

#include <string>

namespace ghostd::server {

// The daemon's version, reported in `initialize` (serverInfo) and --version.
const char* version();
// What `ghostd --version` prints: the version, whether the CUDA backend and
// NCCL are compiled in (and for which architectures), and the CPU kernels
// this machine will run.
std::string build_description();

}  // namespace ghostd::server
