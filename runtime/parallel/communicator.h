// Collectives of a tensor-parallel group: one Communicator per rank, the
// ranks of one group created together. Two implementations: NCCL (one
// process, one thread per GPU) and an in-process one over threads and host
// memory, so the CPU backend runs the same sharded model as N ranks and the
// sharding is tested on every CI run.
//
// Backends queue collectives like their other ops (Backend::all_reduce_sum,
// all_gather), passing their queue as `stream`: a cudaStream_t for NCCL,
// nullptr on the CPU, where a collective runs when it is called.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/core/result.h"

namespace ghostd::runtime {

// Thread-safety: each rank's Communicator is called from that rank's thread
// only; abort() may be called from any thread.
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string name() const = 0;

  // Every rank calls each collective in the same order with the same count.
  // data[i] = the sum over ranks of data[i], the same bits on every rank
  // (summed in rank order).
  virtual Status all_reduce_sum(float* data, size_t count, void* stream) = 0;
  // out[r * count + i] = rank r's in[i]; `in` may not overlap `out`.
  virtual Status all_gather(const float* in, size_t count, float* out, void* stream) = 0;
  // data = root's data on every rank.
  virtual Status broadcast(float* data, size_t count, int root, void* stream) = 0;
  virtual Status barrier() = 0;

  // Fails every pending and later collective of the whole group with `why`
  // (a rank failed: the others must not wait for it forever). Sticky.
  virtual void abort(const std::string& why) = 0;
  // Empty while the group works; else why it failed.
  virtual std::string failure() const = 0;
  // How long a rank may wait in one collective before the group fails.
  virtual std::chrono::milliseconds timeout() const { return std::chrono::milliseconds(30000); }
};

struct HostCommunicatorOptions {
  // A rank that waits this long in one collective fails the whole group:
  // a rank that died mid-step must not hang the others.
  std::chrono::milliseconds timeout{30000};
};

// `ranks` communicators over host memory, rank r at index r.
Result<std::vector<std::unique_ptr<Communicator>>> make_host_communicators(
    int ranks, const HostCommunicatorOptions& options = {});

// One NCCL communicator per CUDA device, rank r on devices[r]
// (ncclCommInitAll). An error when the build has no CUDA or no NCCL, or a
// device is missing. A rank's backend waits at most `timeout` for a step
// with collectives, then aborts the group (ncclCommAbort ends the kernels
// blocked on a dead peer).
Result<std::vector<std::unique_ptr<Communicator>>> make_nccl_communicators(
    std::span<const int> devices, std::chrono::milliseconds timeout = std::chrono::milliseconds(30000));

// Whether this build can make NCCL communicators.
bool nccl_available();

}  // namespace ghostd::runtime
