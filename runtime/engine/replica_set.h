// M engines behind one EngineInterface (`--replicas M`). Each job goes to
// the replica the ReplicaRouter picks for its document (keyed by cache salt
// and document id, so two tenants' files of the same name are two
// documents); the set reports every job's start and end to the router, so
// routing sees each replica's measured queue time, and stamps
// JobMetrics::replica.
//
// Job ids: replica r's local id L is L * M + r, so cancel needs no table
// (local ids start at 1, so no set id is 0).
//
// A replica whose device failed for good (fatal_error) gets no more jobs:
// its documents go to the next live replica, and the set fails only when
// every replica has.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "runtime/engine/engine_api.h"
#include "runtime/engine/replica_router.h"

namespace ghostd::runtime {

// Thread-safety: submit and cancel may be called from any thread (the
// engines and the router are thread-safe). The engines' callbacks use the
// router: the set shuts the engines down (destroys them) before the router
// goes.
class ReplicaSet : public EngineInterface {
 public:
  // `engines`: one or more, none null.
  explicit ReplicaSet(std::vector<std::unique_ptr<EngineInterface>> engines,
                      RouterConfig config = {});
  ~ReplicaSet() override;
  ReplicaSet(const ReplicaSet&) = delete;
  ReplicaSet& operator=(const ReplicaSet&) = delete;

  JobId submit(CompletionJob job, JobCallbacks callbacks) override;
  void cancel(JobId id) override;
  // Empty while any replica can run jobs (jobs routed to a failed replica go
  // to a live one); else every replica's reason.
  std::string fatal_error() const override;

  int size() const { return static_cast<int>(engines_.size()); }
  EngineInterface& replica(int i) { return *engines_.at(static_cast<size_t>(i)); }
  const ReplicaRouter& router() const { return router_; }

 private:
  ReplicaRouter router_;  // declared first: destroyed after the engines
  std::vector<std::unique_ptr<EngineInterface>> engines_;
  std::unique_ptr<std::atomic<bool>[]> dead_;  // logged as failed (once each)
};

}  // namespace ghostd::runtime
