#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "runtime/parallel/communicator.h"

namespace ghostd::runtime {

namespace {

// State shared by the ranks of one host group. Collectives exchange
// pointers through `slots` between barriers; every rank reads the others'
// buffers directly (one address space).
class HostGroup {
 public:
  HostGroup(int n, std::chrono::milliseconds timeout)
      : n_(n), timeout_(timeout), in_(static_cast<size_t>(n)), out_(static_cast<size_t>(n)) {}

  int size() const { return n_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  // All ranks arrive before any leaves. A rank spins a little (a decode step
  // has two collectives per layer, microseconds apart), then sleeps; past
  // the timeout the group fails.
  Status barrier(int rank) {
    if (failed_.load(std::memory_order_acquire)) return failure_status();
    const uint64_t gen = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_) {
      arrived_.store(0, std::memory_order_relaxed);
      {
        std::lock_guard<std::mutex> lock(mu_);
        generation_.store(gen + 1, std::memory_order_release);
      }
      cv_.notify_all();
      return {};
    }
    for (int i = 0; i < 256; ++i) {
      if (generation_.load(std::memory_order_acquire) != gen) return {};
      if (failed_.load(std::memory_order_acquire)) return failure_status();
      std::this_thread::yield();
    }
    std::unique_lock<std::mutex> lock(mu_);
    const bool passed = cv_.wait_for(lock, timeout_, [&] {
      return generation_.load(std::memory_order_acquire) != gen || failed_.load(std::memory_order_acquire);
    });
    if (generation_.load(std::memory_order_acquire) != gen) return {};
    lock.unlock();
    if (!passed) {
      abort("rank " + std::to_string(rank) + " waited " + std::to_string(timeout_.count()) +
            " ms in a collective for the other ranks (a rank failed or stopped)");
    }
    return failure_status();
  }

  void abort(const std::string& why) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!failed_.load(std::memory_order_relaxed)) {
        why_ = why;
        failed_.store(true, std::memory_order_release);
      }
    }
    cv_.notify_all();
  }

  std::string failure() const {
    if (!failed_.load(std::memory_order_acquire)) return {};
    std::lock_guard<std::mutex> lock(mu_);
    return why_;
  }

  // Pointers of the current collective, written before a barrier and read
  // after it (the barrier orders them).
  const float*& in(int r) { return in_[static_cast<size_t>(r)]; }
  float*& out(int r) { return out_[static_cast<size_t>(r)]; }

 private:
  Status failure_status() const { return Error{"tensor-parallel group failed: " + failure()}; }

  const int n_;
  const std::chrono::milliseconds timeout_;
  std::atomic<int> arrived_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> failed_{false};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string why_;
  std::vector<const float*> in_;
  std::vector<float*> out_;
};

// The chunk of [0, count) that `rank` reduces.
std::pair<size_t, size_t> chunk_of(size_t count, int rank, int n) {
  const size_t per = (count + static_cast<size_t>(n) - 1) / static_cast<size_t>(n);
  const size_t b = std::min(count, per * static_cast<size_t>(rank));
  return {b, std::min(count, b + per)};
}

class HostCommunicator final : public Communicator {
 public:
  HostCommunicator(std::shared_ptr<HostGroup> group, int rank) : group_(std::move(group)), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return group_->size(); }
  std::string name() const override { return "host"; }

  // Reduce-scatter then all-gather over shared memory: rank r sums chunk r
  // of every rank's buffer in rank order and writes it into its own buffer;
  // then every rank copies the other chunks from their owners. Chunks are
  // disjoint, so no rank writes what another reads in the same phase.
  Status all_reduce_sum(float* data, size_t count, void*) override {
    const int n = size();
    if (n == 1) return {};
    group_->out(rank_) = data;
    GHOSTD_TRY_STATUS(group_->barrier(rank_));
    auto [b, e] = chunk_of(count, rank_, n);
    for (size_t i = b; i < e; ++i) {
      float s = group_->out(0)[i];
      for (int r = 1; r < n; ++r) s += group_->out(r)[i];
      data[i] = s;
    }
    GHOSTD_TRY_STATUS(group_->barrier(rank_));
    for (int r = 0; r < n; ++r) {
      if (r == rank_) continue;
      auto [rb, re] = chunk_of(count, r, n);
      if (re > rb) std::memcpy(data + rb, group_->out(r) + rb, (re - rb) * sizeof(float));
    }
    // Nobody leaves while another rank may still read its buffer.
    return group_->barrier(rank_);
  }

  Status all_gather(const float* in, size_t count, float* out, void*) override {
    const int n = size();
    group_->in(rank_) = in;
    GHOSTD_TRY_STATUS(group_->barrier(rank_));
    for (int r = 0; r < n; ++r)
      if (count) std::memcpy(out + static_cast<size_t>(r) * count, group_->in(r), count * sizeof(float));
    return group_->barrier(rank_);
  }

  Status broadcast(float* data, size_t count, int root, void*) override {
    if (root < 0 || root >= size()) return Error{"broadcast: root " + std::to_string(root) + " outside the group"};
    group_->in(rank_) = data;
    GHOSTD_TRY_STATUS(group_->barrier(rank_));
    if (rank_ != root && count) std::memcpy(data, group_->in(root), count * sizeof(float));
    return group_->barrier(rank_);
  }

  Status barrier() override { return group_->barrier(rank_); }
  void abort(const std::string& why) override { group_->abort(why); }
  std::string failure() const override { return group_->failure(); }
  std::chrono::milliseconds timeout() const override { return group_->timeout(); }

 private:
  std::shared_ptr<HostGroup> group_;
  int rank_;
};

}  // namespace

Result<std::vector<std::unique_ptr<Communicator>>> make_host_communicators(int ranks,
                                                                         const HostCommunicatorOptions& options) {
  if (ranks < 1 || ranks > 256) return Error{"tensor parallel: " + std::to_string(ranks) + " ranks (1 to 256)"};
  auto group = std::make_shared<HostGroup>(ranks, options.timeout);
  std::vector<std::unique_ptr<Communicator>> out;
  for (int r = 0; r < ranks; ++r) out.push_back(std::make_unique<HostCommunicator>(group, r));
  return out;
}

}  // namespace ghostd::runtime
