#include "runtime/engine/replica_set.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/runtime/engine/engine_harness.h"

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
  std::string fatal_error() const override {
    std::lock_guard lock(mu);
    return fatal;
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

  mutable std::mutex mu;
  std::string fatal;
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

TEST_CASE(
    "replica set: jobs follow their document, ids cancel on the right replica, metrics name the "
    "replica") {
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

TEST_CASE("replica set: a replica whose device failed gets no more jobs; the set fails when all have") {
  Fixture f(3);
  const std::string doc = "file:///lost.py";
  const int home = static_cast<int>(f.set->submit(job_for(doc), {}) % 3);
  CHECK(f.set->fatal_error().empty());
  {
    std::lock_guard lock(f.fakes[static_cast<size_t>(home)]->mu);
    f.fakes[static_cast<size_t>(home)]->fatal = "fake device: illegal address (sticky)";
  }
  CHECK(f.set->fatal_error().empty());  // two replicas still run jobs
  for (int i = 0; i < 5; ++i) {
    const JobId id = f.set->submit(job_for(doc), {});
    CHECK(id != 0);
    CHECK(static_cast<int>(id % 3) != home);
  }
  for (auto* e : f.fakes) {
    std::lock_guard lock(e->mu);
    e->fatal = "fake device: illegal address (sticky)";
  }
  const std::string all = f.set->fatal_error();
  CHECK(all.find("replica 0: fake device") != std::string::npos);
  CHECK(all.find("replica 2: fake device") != std::string::npos);
  // With none left a job still reaches an engine, which fails it.
  CHECK(f.set->submit(job_for(doc), {}) != 0);
}

TEST_CASE("replica set: the cache salt keeps tenants' documents apart") {
  Fixture f(4);
  const std::string doc = "file:///same/name.py";
  std::vector<int> replicas;
  for (int t = 0; t < 16; ++t)
    replicas.push_back(
        static_cast<int>(f.set->submit(job_for(doc, "tenant" + std::to_string(t)), {}) % 4));
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

// Two real engines (copies of one random model, as --replicas loads them).
namespace {
namespace et = ghostd::runtime::engine_testing;

struct EngineReplicas {
  explicit EngineReplicas(RouterConfig config, int flood_blocks = 256) {
    for (int i = 0; i < 2; ++i) {
      models.push_back(std::make_unique<et::TestModel>());
      if (!models.back()->ready) return;
    }
    std::vector<std::unique_ptr<EngineInterface>> engines;
    EngineOptions o = et::small_options();
    o.validate_each_step = false;  // a long flood: keep sanitizer builds quick
    engines.push_back(et::make_engine(*models[0], o, flood_blocks));
    engines.push_back(et::make_engine(*models[1], o, 256));
    set = std::make_unique<ReplicaSet>(std::move(engines), config);
  }
  bool ready() const { return set != nullptr; }
  std::vector<std::unique_ptr<et::TestModel>> models;
  std::unique_ptr<ReplicaSet> set;  // declared last: its engines go before the models
};

// A document routed to `replica` on an empty set (its ring home).
std::string document_homed_at(const ReplicaSet& set, int replica, int start) {
  for (int i = start;; ++i) {
    const std::string doc = "file:///e" + std::to_string(i) + ".py";
    if (set.router().home(std::string() + '\x1f' + doc) == replica) return doc;
  }
}
}  // namespace

TEST_CASE("replica set on engines: a document stays on its replica and reuses its KV there") {
  EngineReplicas r({});
  if (!r.ready()) return;
  std::mt19937 rng(7);
  for (int d = 0; d < 6; ++d) {
    const std::string doc = "file:///doc" + std::to_string(d) + ".py";
    std::vector<int32_t> prompt = et::random_prompt(rng, 80);
    int replica = -1;
    for (int keystroke = 0; keystroke < 4; ++keystroke) {
      prompt.push_back(static_cast<int32_t>(keystroke + 1));
      et::Collector c;
      r.set->submit(et::greedy_job(prompt, 4, doc), c.callbacks());
      REQUIRE(c.wait_all());
      const JobResult& res = c.at(0).result;
      CHECK(res.status == JobStatus::kFinished);
      if (keystroke == 0) {
        replica = res.metrics.replica;
        CHECK(replica == r.set->router().home(std::string() + '\x1f' + doc));
      } else {
        CHECK(res.metrics.replica == replica);
        CHECK(res.metrics.reused_tokens >= 64);  // the blocks before the edit
      }
    }
  }
  CHECK(r.set->router().moves() == 0);
}

TEST_CASE("replica set on engines: a flood on one replica moves new documents to the idle one") {
  RouterConfig config;
  config.overload_queue_ms = 20;
  // Replica 0's pool holds two flood jobs at a time: the rest queue.
  EngineReplicas r(config, 16);
  if (!r.ready()) return;
  std::mt19937 rng(11);
  const std::string flood_doc = document_homed_at(*r.set, 0, 0);
  et::Collector flood;
  std::vector<JobId> flood_ids;
  for (int i = 0; i < 64; ++i) {
    flood_ids.push_back(r.set->submit(et::greedy_job(et::random_prompt(rng, 48), 64, flood_doc),
                                      flood.callbacks()));
  }
  // Wait until replica 0 measurably queues.
  const auto give_up = Clock::now() + std::chrono::seconds(20);
  while (r.set->router().load(0, Clock::now()).queue_ms <= 2 * config.overload_queue_ms &&
         Clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  REQUIRE(r.set->router().load(0, Clock::now()).queue_ms > config.overload_queue_ms);
  // New documents homed on replica 0 run on replica 1, one after another (so replica 1 stays idle).
  for (int i = 0, start = 1000; i < 5; ++i) {
    const std::string doc = document_homed_at(*r.set, 0, start);
    start = std::stoi(doc.substr(std::string("file:///e").size())) + 1;
    et::Collector c;
    r.set->submit(et::greedy_job(et::random_prompt(rng, 20), 2, doc), c.callbacks());
    REQUIRE(c.wait_all());
    CHECK(c.at(0).result.status == JobStatus::kFinished);
    CHECK(c.at(0).result.metrics.replica == 1);
  }
  CHECK(r.set->router().moves() == 5);
  CHECK(r.set->router().load(1, Clock::now()).moved_in == 5);
  // The flooding document itself stays with its backlog.
  CHECK(r.set->router().assigned(std::string() + '\x1f' + flood_doc) == 0);
  for (JobId id : flood_ids) r.set->cancel(id);
  REQUIRE(flood.wait_all());
  for (size_t i = 0; i < flood.size(); ++i) CHECK(flood.at(i).result.metrics.replica == 0);
}

TEST_CASE(
    "replica set on engines: threads submitting and cancelling at once leave no job in flight") {
  EngineReplicas r({});
  if (!r.ready()) return;
  et::Collector c;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&r, &c, t] {
      std::mt19937 rng(static_cast<unsigned>(100 + t));
      for (int i = 0; i < 16; ++i) {
        const std::string doc =
            "file:///t" + std::to_string(t) + "_" + std::to_string(i % 3) + ".py";
        const JobId id =
            r.set->submit(et::greedy_job(et::random_prompt(rng, 24), 8, doc), c.callbacks());
        if (i % 4 == 3) r.set->cancel(id);
      }
    });
  }
  for (auto& th : threads) th.join();
  REQUIRE(c.wait_all());
  for (size_t i = 0; i < c.size(); ++i) {
    CHECK(c.at(i).done_calls == 1);
    CHECK((c.at(i).result.metrics.replica == 0 || c.at(i).result.metrics.replica == 1));
  }
  for (int i = 0; i < 2; ++i) {
    const ReplicaLoad load = r.set->router().load(i, Clock::now());
    CHECK(load.in_flight == 0);
    CHECK(load.waiting == 0);
  }
}
