// The threads of a tensor-parallel group: rank 0 is the calling (engine)
// thread, ranks 1..N-1 are persistent threads that each own their rank's
// backend while a job runs. Every rank runs the same prepared step (SPMD);
// they meet in the collectives of the step.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/core/result.h"

namespace ghostd::runtime {

// Thread-safety: run() is called by one thread at a time (the owner).
class RankThreads {
 public:
  explicit RankThreads(int ranks);
  ~RankThreads();
  RankThreads(const RankThreads&) = delete;
  RankThreads& operator=(const RankThreads&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }
  // fn(rank) on every rank at once (rank 0 on the caller); returns when all
  // are done, with the error of the lowest failing rank.
  Status run(const std::function<Status(int)>& fn);

 private:
  void loop(int rank);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable start_, done_;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  const std::function<Status(int)>* job_ = nullptr;
  std::vector<Status> results_;
};

}  // namespace ghostd::runtime
