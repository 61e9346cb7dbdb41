#include "runtime/engine/replica_router.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using ghostd::runtime::Clock;
using ghostd::runtime::ReplicaRouter;
using ghostd::runtime::RouterConfig;

namespace {

using std::chrono::milliseconds;

std::string doc(int i) {
  return "file:///src/module_" + std::to_string(i) + ".py";
}

// The first document (from `start`) whose ring home is `replica`.
std::string doc_homed_at(const ReplicaRouter& router, int replica, int start = 0) {
  for (int i = start;; ++i)
    if (router.home(doc(i)) == replica) return doc(i);
}

// `n` jobs of one document submitted on `replica` at `t`, none started.
std::vector<uint64_t> flood(ReplicaRouter& router, int replica, int n, Clock::time_point t,
                            const std::string& document = "file:///flood.py") {
  std::vector<uint64_t> tickets;
  for (int i = 0; i < n; ++i) tickets.push_back(router.job_submitted(replica, document, t));
  return tickets;
}

}  // namespace

TEST_CASE("router: a document's requests land on one replica") {
  ReplicaRouter router(4);
  const auto t = Clock::now();
  std::vector<int> count(4, 0);
  for (int i = 0; i < 1000; ++i) {
    const auto first = router.route(doc(i), t);
    CHECK_FALSE(first.moved);
    CHECK(first.replica == router.home(doc(i)));
    ++count[static_cast<size_t>(first.replica)];
    for (int again = 0; again < 3; ++again) CHECK(router.route(doc(i), t).replica == first.replica);
    CHECK(router.assigned(doc(i)) == first.replica);
  }
  // Virtual nodes spread documents: each of 4 replicas gets 15% to 35%.
  for (int c : count) {
    CAPTURE(c);
    CHECK(c > 150);
    CHECK(c < 350);
  }
  CHECK(router.moves() == 0);
}

TEST_CASE("router: adding a replica moves few documents, all to the new one") {
  ReplicaRouter router(3);
  const int n = 3000;
  std::vector<int> before;
  for (int i = 0; i < n; ++i) before.push_back(router.home(doc(i)));
  // Half the documents are routed (their KV is somewhere) before the new replica comes.
  const auto t = Clock::now();
  for (int i = 0; i < n; i += 2) router.route(doc(i), t);
  CHECK(router.add_replica() == 3);
  int changed = 0;
  for (int i = 0; i < n; ++i) {
    const int after = router.home(doc(i));
    if (after != before[static_cast<size_t>(i)]) {
      ++changed;
      CHECK(after == 3);  // consistent hashing: no document moves between old replicas
    }
  }
  // About 1/4 of the homes change (a modulo hash would change about 3/4).
  CAPTURE(changed);
  CHECK(changed > n / 8);
  CHECK(changed < n * 3 / 8);
  // Routed documents stay with their KV; the others follow the new ring.
  for (int i = 0; i < n; ++i) {
    const int expected = i % 2 == 0 ? before[static_cast<size_t>(i)] : router.home(doc(i));
    CHECK(router.route(doc(i), t).replica == expected);
  }
  CHECK(router.moves() == 0);
}

TEST_CASE("router: a flood on one replica moves new documents away") {
  RouterConfig config;
  config.overload_queue_ms = 50;
  ReplicaRouter router(2, config);
  const auto t0 = Clock::now();
  const std::string kept = doc_homed_at(router, 1);
  CHECK(router.route(kept, t0).replica == 1);
  // Replica 0 floods: 32 jobs waiting. Not yet overloaded at 10 ms...
  const auto flooded = flood(router, 0, 32, t0);
  const std::string early = doc_homed_at(router, 0);
  CHECK(router.route(early, t0 + milliseconds(10)).replica == 0);
  // ...but at 200 ms its queue time is past the bound while replica 1 is idle.
  const auto t1 = t0 + milliseconds(200);
  CHECK(router.load(0, t1).queue_ms >= 200);
  CHECK(router.load(0, t1).waiting == 32);
  int moved = 0;
  for (int i = 0, found = 0; found < 20; ++i) {
    if (router.home(doc(i)) != 0 || doc(i) == early) continue;
    ++found;
    const auto d = router.route(doc(i), t1);
    CHECK(d.replica == 1);
    CHECK(d.moved);
    CHECK(d.from == 0);
    moved += d.moved;
    CHECK(router.assigned(doc(i)) == 1);  // affinity moves with the document
  }
  CHECK(moved == 20);
  CHECK(router.load(1, t1).moved_in == 20);
  // A document already on the flooded replica moves too (its KV is cold there anyway behind the
  // queue).
  CHECK(router.route(early, t1).replica == 1);
  // A document of the idle replica stays.
  CHECK_FALSE(router.route(kept, t1).moved);
  CHECK(router.route(kept, t1).replica == 1);
  // Once the flood drains, new documents go home again and moved ones stay put.
  for (uint64_t ticket : flooded) router.job_ended(0, ticket, 150, t1);
  CHECK(router.load(0, t1).queue_ms == 0);
  const std::string later = doc_homed_at(router, 0, 5000);
  CHECK(router.route(later, t1).replica == 0);
  CHECK(router.route(early, t1).replica == 1);
}

TEST_CASE("router: a document does not run from its own backlog") {
  ReplicaRouter router(2);
  const auto t0 = Clock::now();
  const std::string typist = doc_homed_at(router, 0);
  CHECK(router.route(typist, t0).replica == 0);
  // Only the typist's own jobs wait on replica 0 (a long prefill, superseded requests).
  flood(router, 0, 3, t0, typist);
  const auto t1 = t0 + milliseconds(300);
  CHECK(router.load(0, t1).queue_ms > 50);
  CHECK_FALSE(router.route(typist, t1).moved);
  CHECK(router.route(typist, t1).replica == 0);
  // Another document homed there does move: the queue is not its own.
  const std::string other = doc_homed_at(router, 0, 1000);
  CHECK(router.route(other, t1).moved);
}

TEST_CASE("router: no move when every replica is busy") {
  ReplicaRouter router(3);
  const auto t0 = Clock::now();
  for (int r = 0; r < 3; ++r) flood(router, r, 8, t0);
  const auto t1 = t0 + milliseconds(500);
  for (int i = 0; i < 100; ++i) {
    const auto d = router.route(doc(i), t1);
    CHECK_FALSE(d.moved);
    CHECK(d.replica == router.home(doc(i)));
  }
  CHECK(router.moves() == 0);
}

TEST_CASE("router: a replica with a job waiting is not idle, even below the bound") {
  RouterConfig config;
  config.overload_queue_ms = 50;
  ReplicaRouter router(2, config);
  const auto t0 = Clock::now();
  flood(router, 0, 4, t0);
  router.job_submitted(1, "file:///other.py",
                       t0 + milliseconds(190));  // 10 ms old: light, but waiting
  const auto t1 = t0 + milliseconds(200);
  const std::string d = doc_homed_at(router, 0);
  CHECK_FALSE(router.route(d, t1).moved);
  CHECK(router.route(d, t1).replica == 0);
}

TEST_CASE("router: measured queue times count while the replica stays busy") {
  RouterConfig config;
  config.overload_queue_ms = 50;
  ReplicaRouter router(2, config);
  const auto t = Clock::now();
  // Replica 0 runs jobs (all started) whose engine-measured queue time was 400 ms.
  const auto running = flood(router, 0, 10, t);
  for (uint64_t ticket : running) router.job_started(0, ticket);
  for (size_t i = 0; i + 1 < running.size(); ++i) router.job_ended(0, running[i], 400, t);
  CHECK(router.load(0, t).waiting == 0);
  CHECK(router.load(0, t).in_flight == 1);
  CHECK(router.load(0, t).queue_ms > 50);
  const std::string d = doc_homed_at(router, 0);
  CHECK(router.route(d, t).replica == 1);
  // A replica that drained has no queue.
  router.job_ended(0, running.back(), 400, t);
  CHECK(router.load(0, t).queue_ms == 0);
  CHECK(router.load(0, t).in_flight == 0);
  // A job that never started waited its whole life.
  const uint64_t never = router.job_submitted(1, doc(1), t);
  const uint64_t other = router.job_submitted(1, doc(2), t);
  router.job_ended(1, never, 0, t + milliseconds(300));
  CHECK(router.load(1, t + milliseconds(300)).queue_ms >= 300 * config.queue_average_weight);
  router.job_ended(1, other, 0, t + milliseconds(300));
}

TEST_CASE("router: the affinity table keeps the most recently routed documents") {
  RouterConfig config;
  config.max_documents = 2;
  ReplicaRouter router(2, config);
  const auto t = Clock::now();
  router.route(doc(0), t);
  router.route(doc(1), t);
  router.route(doc(0), t);  // doc 1 is now the least recent
  router.route(doc(2), t);
  CHECK(router.assigned(doc(0)).has_value());
  CHECK_FALSE(router.assigned(doc(1)).has_value());
  CHECK(router.assigned(doc(2)).has_value());
}

TEST_CASE("router: one replica takes everything") {
  ReplicaRouter router(1);
  const auto t0 = Clock::now();
  flood(router, 0, 50, t0);
  for (int i = 0; i < 20; ++i) CHECK(router.route(doc(i), t0 + milliseconds(1000)).replica == 0);
  CHECK(router.load(0, t0).routed == 20);
}
