#include "runtime/engine/replica_set.h"

#include <spdlog/spdlog.h>

#include <cassert>
#include <string>
#include <utility>

namespace ghostd::runtime {

ReplicaSet::ReplicaSet(std::vector<std::unique_ptr<EngineInterface>> engines, RouterConfig config)
    : router_(static_cast<int>(engines.size()), config),
      engines_(std::move(engines)),
      dead_(std::make_unique<std::atomic<bool>[]>(engines_.size())) {
  assert(!engines_.empty());
}

ReplicaSet::~ReplicaSet() {
  // Engines end their jobs (on_done runs, reporting to the router) as they go.
  engines_.clear();
}

JobId ReplicaSet::submit(CompletionJob job, JobCallbacks callbacks) {
  const auto now = Clock::now();
  // \x1f cannot start a URI, so salt + document never collide across tenants.
  const std::string key = job.cache_salt + '\x1f' + job.document_id;
  const ReplicaRouter::Decision d = router_.route(key, now);
  if (d.moved) {
    spdlog::info("replicas: document {} moved from replica {} (queue {:.1f} ms) to idle replica {}",
                 job.document_id, d.from, router_.load(d.from, now).queue_ms, d.replica);
  }
  int r = d.replica;
  if (engines_.size() > 1) {
    // A failed replica fails every job at once: its documents go to the
    // next live one.
    for (size_t tries = 0; tries < engines_.size(); ++tries) {
      const size_t i = (static_cast<size_t>(d.replica) + tries) % engines_.size();
      const std::string why = engines_[i]->fatal_error();
      if (why.empty()) {
        r = static_cast<int>(i);
        break;
      }
      if (!dead_[i].exchange(true))
        spdlog::error("replicas: replica {} failed for good ({}); its documents go to the other replicas", i, why);
    }
  }
  const uint64_t ticket = router_.job_submitted(r, key, now);

  // on_tokens and on_done of one job run on one thread, one after the other.
  auto started = std::make_shared<bool>(false);
  JobCallbacks wrapped;
  wrapped.on_tokens = [this, r, ticket, started,
                       inner = std::move(callbacks.on_tokens)](const std::vector<int32_t>& tokens) {
    if (!*started) {
      *started = true;
      router_.job_started(r, ticket);
    }
    return inner ? inner(tokens) : true;
  };
  wrapped.on_done = [this, r, ticket, inner = std::move(callbacks.on_done)](JobResult result) {
    router_.job_ended(r, ticket, result.metrics.queue_ms, Clock::now());
    result.metrics.replica = r;
    if (inner) inner(std::move(result));
  };
  const JobId local = engines_[static_cast<size_t>(r)]->submit(std::move(job), std::move(wrapped));
  if (local == 0) return 0;  // ended at once (e.g. no engine behind it)
  return local * engines_.size() + static_cast<JobId>(r);
}

std::string ReplicaSet::fatal_error() const {
  std::string all;
  for (size_t i = 0; i < engines_.size(); ++i) {
    std::string why = engines_[i]->fatal_error();
    if (why.empty()) return {};
    if (engines_.size() == 1) return why;
    all += (all.empty() ? "" : "; ") + ("replica " + std::to_string(i) + ": ") + why;
  }
  return all;
}

void ReplicaSet::cancel(JobId id) {
  if (id == 0) return;
  const size_t m = engines_.size();
  engines_[id % m]->cancel(id / m);
}

}  // namespace ghostd::runtime
