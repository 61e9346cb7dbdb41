#include "runtime/engine/replica_set.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace ghostd::runtime;

namespace {

// Holds jobs until the test starts or ends them; ends what is left when destroyed.
class FakeEngine : public EngineInterface {
 public:
  struct Job {
    CompletionJob job;
    JobCallbacks callbacks;
  };
  ~FakeEngine() override {
    for (auto& [id, j] : jobs) end(id, JobStatus::kCancelled);
  }
  JobId submit(CompletionJob job, JobCallbacks callbacks) override {
    std::lock_guard lock(mu);
    const JobId id = next++;
    jobs.emplace(id, Job{std::move(job), std::move(callbacks)});
    return id;
  }
  void cancel(JobId id) override {
    std::lock_guard lock(mu);
    cancelled.push_back(id);
  }
  void first_token(JobId id) { (void)jobs.at(id).callbacks.on_tokens({7}); }
  void end(JobId id, JobStatus status, double queue_ms = 0) {
    JobResult r;
    r.status = status;
    r.metrics.queue_ms = queue_ms;
    auto& cb = jobs.at(id).callbacks;
    if (cb.on_done) {
      auto done = std::move(cb.on_done);
      cb.on_done = nullptr;
      done(std::move(r));
    }
  }

  std::mutex mu;
  std::map<JobId, Job> jobs;
  std::vector<JobId> cancelled;
  JobId next = 1;
};

struct Fixture {
  explicit Fixture(int m, RouterConfig config = {}) {
    std::vector<std::unique_ptr<EngineInterface>> engines;
    for (int i = 0; i < m; ++i) {
      auto e = std::make_unique<FakeEngine>();
      fakes.push_back(e.get());
      engines.push_back(std::move(e));
    }
    set = std::make_unique<ReplicaSet>(std::move(engines), config);
  }
  std::vector<FakeEngine*> fakes;
  std::unique_ptr<ReplicaSet> set;
};

CompletionJob job_for(const std::string& doc, const std::string& salt = {}) {
  CompletionJob j;
  j.prompt = {1, 2, 3};
  j.document_id = doc;
  j.cache_salt = salt;
  return j;
}

}  // namespace

TEST_CASE("replica set: jobs follow their document, ids cancel on the right replica, metrics name the replica") {
  Fixture f(3);
  std::map<std::string, int> replica_of;
  std::vector<int> done_replica;
  for (int round = 0; round < 3; ++round) {
    for (int d = 0; d < 30; ++d) {
      const std::string doc = "file:///d" + std::to_string(d);
      JobCallbacks cb;
      cb.on_done = [&done_replica](JobResult r) { done_replica.push_back(r.metrics.replica); };
      const JobId id = f.set->submit(job_for(doc), std::move(cb));
      REQUIRE(id != 0);
      const int r = static_cast<int>(id % 3);
      if (round == 0) replica_of[doc] = r;
      CHECK(replica_of[doc] == r);
      FakeEngine& e = *f.fakes[static_cast<size_t>(r)];
      const JobId local = id / 3;
      CHECK(e.jobs.at(local).job.document_id == doc);
      f.set->cancel(id);
      CHECK(e.cancelled.back() == local);
      e.first_token(local);
      e.end(local, JobStatus::kCancelled);
      CHECK(done_replica.back() == r);
    }
  }
  for (int r = 0; r < 3; ++r) CHECK(f.set->router().load(r, Clock::now()).in_flight == 0);
}

TEST_CASE("replica set: the cache salt keeps tenants' documents apart") {
  Fixture f(4);
  const std::string doc = "file:///same/name.py";
  std::vector<int> replicas;
  for (int t = 0; t < 16; ++t) replicas.push_back(static_cast<int>(f.set->submit(job_for(doc, "tenant" + std::to_string(t)), {}) % 4));
  // The same URI under 16 salts is 16 documents: they spread over the replicas.
  std::sort(replicas.begin(), replicas.end());
  CHECK(std::unique(replicas.begin(), replicas.end()) - replicas.begin() > 1);
}

TEST_CASE("replica set: a replica slow to start its jobs loses new documents to an idle one") {
  RouterConfig config;
  config.overload_queue_ms = 100;
  Fixture f(2, config);
  // Fill the replica of document a with jobs that never start.
  const std::string a = "file:///a.py";
  const JobId first = f.set->submit(job_for(a), {});
  const int busy = static_cast<int>(first % 2);
  for (int i = 0; i < 15; ++i) CHECK(static_cast<int>(f.set->submit(job_for(a), {}) % 2) == busy);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  // Every new document now lands on the other replica, whatever its home.
  int moved = 0;
  for (int d = 0; d < 20; ++d) {
    const std::string doc = "file:///new" + std::to_string(d);
    const bool homed_busy = f.set->router().home(std::string() + '\x1f' + doc) == busy;
    const JobId id = f.set->submit(job_for(doc), {});
    CHECK(static_cast<int>(id % 2) == 1 - busy);
    moved += homed_busy;
    // The idle replica starts and ends its jobs at once: it stays idle.
    FakeEngine& idle = *f.fakes[static_cast<size_t>(1 - busy)];
    idle.first_token(id / 2);
    idle.end(id / 2, JobStatus::kFinished, 0.5);
  }
  CHECK(moved > 0);
  CHECK(f.set->router().moves() == static_cast<uint64_t>(moved));
}
