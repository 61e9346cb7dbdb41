// The devices of one tensor-parallel group: a backend and a communicator per
// rank, from --devices / --tensor-parallel.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/backend.h"
#include "runtime/core/result.h"
#include "runtime/parallel/communicator.h"

namespace ghostd::runtime {

// Thread-safety: owned by the engine's owner; each backend belongs to its
// rank's thread during a step (Model).
struct DeviceGroup {
  std::vector<std::string> devices;  // rank order
  std::vector<std::unique_ptr<Backend>> backends;
  std::vector<std::unique_ptr<Communicator>> comms;  // empty with one rank

  int size() const { return static_cast<int>(backends.size()); }
  std::vector<Backend*> backend_list() const;
  std::vector<Communicator*> comm_list() const;
};

// The rank devices from the flags: `devices` is a comma list ("cpu,cpu",
// "cuda:0,cuda:1") or empty; then `tensor_parallel` ranks of `device`
// ("cpu": that many CPU ranks; "cuda" or "auto" with GPUs: cuda:0..N-1).
// Errors name the flag to change.
Result<std::vector<std::string>> resolve_devices(std::string_view devices, int tensor_parallel, std::string_view device);

struct DeviceGroupOptions {
  int cpu_threads = 0;  // over all CPU ranks (0: every hardware thread); each rank gets its share
  HostCommunicatorOptions host;  // its timeout bounds NCCL collectives too
  // Communicators even for one rank, so a single device runs the sharded
  // path with its collectives (tests: NCCL with one rank).
  bool always_communicate = false;
};

// Backends and communicators for `devices` (all "cpu" or all CUDA): host
// communicators for CPU ranks, NCCL for GPUs.
Result<DeviceGroup> make_device_group(const std::vector<std::string>& devices, const DeviceGroupOptions& options = {});

}  // namespace ghostd::runtime
