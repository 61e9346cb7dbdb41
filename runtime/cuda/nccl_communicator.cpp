// NCCL collectives for a tensor-parallel group in one process: one rank per
// GPU, each driven by its own thread (so no ncclGroupStart/End is needed).
// Collectives are queued on the rank backend's stream, so they are captured
// into the decode graph with the kernels around them.
#include <atomic>
#include <mutex>
#include <string>

#include <cuda_runtime.h>
#include <spdlog/spdlog.h>

#include "runtime/parallel/communicator.h"

#if GHOSTD_HAVE_NCCL
#include <nccl.h>
#endif

namespace ghostd::runtime {

#if GHOSTD_HAVE_NCCL

namespace {

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(ncclComm_t comm, int rank, int size, int device, std::chrono::milliseconds timeout)
      : comm_(comm), rank_(rank), size_(size), device_(device), timeout_(timeout) {}
  ~NcclCommunicator() override {
    if (scratch_) {
      cudaSetDevice(device_);
      cudaFree(scratch_);
    }
    if (!failed_.load()) ncclCommDestroy(comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "nccl"; }
  std::chrono::milliseconds timeout() const override { return timeout_; }

  Status all_reduce_sum(float* data, size_t count, void* stream) override {
    cudaSetDevice(device_);
    return check(ncclAllReduce(data, data, count, ncclFloat32, ncclSum, comm_, static_cast<cudaStream_t>(stream)),
                 "all-reduce");
  }
  Status all_gather(const float* in, size_t count, float* out, void* stream) override {
    cudaSetDevice(device_);
    return check(ncclAllGather(in, out, count, ncclFloat32, comm_, static_cast<cudaStream_t>(stream)), "all-gather");
  }
  Status broadcast(float* data, size_t count, int root, void* stream) override {
    cudaSetDevice(device_);
    return check(ncclBroadcast(data, data, count, ncclFloat32, root, comm_, static_cast<cudaStream_t>(stream)),
                 "broadcast");
  }
  Status barrier() override {
    cudaSetDevice(device_);
    if (!scratch_ && cudaMalloc(reinterpret_cast<void**>(&scratch_), sizeof(float)) != cudaSuccess)
      return Error{"nccl barrier: cudaMalloc failed"};
    GHOSTD_TRY_STATUS(check(ncclAllReduce(scratch_, scratch_, 1, ncclFloat32, ncclSum, comm_, nullptr), "barrier"));
    if (cudaStreamSynchronize(nullptr) != cudaSuccess) return Error{"nccl barrier: synchronize failed"};
    return {};
  }

  // ncclCommAbort ends collectives blocked on a dead peer.
  void abort(const std::string& why) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (failed_.exchange(true)) return;
    why_ = why;
    ncclCommAbort(comm_);
  }
  std::string failure() const override {
    std::lock_guard<std::mutex> lock(mu_);
    if (failed_.load()) return why_;
    ncclResult_t async = ncclSuccess;
    if (ncclCommGetAsyncError(comm_, &async) == ncclSuccess && async != ncclSuccess && async != ncclInProgress)
      return std::string("nccl: ") + ncclGetErrorString(async);
    return {};
  }

 private:
  Status check(ncclResult_t r, const char* what) {
    if (failed_.load()) return Error{"nccl " + std::string(what) + ": the group failed: " + failure()};
    if (r == ncclSuccess) return {};
    return Error{"nccl " + std::string(what) + " on rank " + std::to_string(rank_) + ": " + ncclGetErrorString(r)};
  }

  ncclComm_t comm_;
  int rank_, size_, device_;
  std::chrono::milliseconds timeout_;
  float* scratch_ = nullptr;
  mutable std::mutex mu_;
  std::atomic<bool> failed_{false};
  std::string why_;
};

}  // namespace

bool nccl_available() { return true; }

Result<std::vector<std::unique_ptr<Communicator>>> make_nccl_communicators(std::span<const int> devices,
                                                                         std::chrono::milliseconds timeout) {
  const int n = static_cast<int>(devices.size());
  if (n < 1) return Error{"nccl: no devices"};
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) count = 0;
  for (int d : devices)
    if (d < 0 || d >= count)
      return Error{"nccl: device cuda:" + std::to_string(d) + " does not exist (" + std::to_string(count) +
                   " CUDA devices visible); fix --devices"};
  std::vector<ncclComm_t> comms(static_cast<size_t>(n));
  if (ncclResult_t r = ncclCommInitAll(comms.data(), n, devices.data()); r != ncclSuccess)
    return Error{std::string("nccl: ncclCommInitAll failed: ") + ncclGetErrorString(r)};
  std::vector<std::unique_ptr<Communicator>> out;
  for (int r = 0; r < n; ++r)
    out.push_back(
        std::make_unique<NcclCommunicator>(comms[static_cast<size_t>(r)], r, n, devices[static_cast<size_t>(r)], timeout));
  int version = 0;
  ncclGetVersion(&version);
  spdlog::info("nccl {}: {} ranks", version, n);
  return out;
}

#else

bool nccl_available() { return false; }

Result<std::vector<std::unique_ptr<Communicator>>> make_nccl_communicators(std::span<const int>,
                                                                         std::chrono::milliseconds) {
  return Error{"tensor parallelism on GPUs needs NCCL, and this build has none (install NCCL and rebuild)"};
}

#endif

}  // namespace ghostd::runtime
