// Which replica serves a document (`--replicas M`: M engines behind one
// server). Device-free bookkeeping, unit-tested on its own.
//
// Affinity: a document's KV lives in the prefix cache of the replica that
// served it, so its requests keep going there. The first request of a
// document goes to its home on a consistent-hash ring (`virtual_nodes`
// points per replica): the home does not depend on arrival order, and adding
// a replica changes the home of about 1/(M+1) of the documents, all of them
// to the new replica. Once routed, a document's replica is remembered (the
// affinity table, least recently routed dropped past `max_documents`; a
// dropped document falls back to its home, where it most likely was).
//
// Load: the router sees every job of every replica (ReplicaSet reports
// submit, first token and end). A replica's queue time is the age of its
// oldest job still waiting for its first token, or, when that is shorter,
// the average of its recent jobs' measured queue_ms (JobMetrics) over the
// current busy period; a replica with nothing in flight has none.
//
// Moves: a document moves only when its replica is overloaded (queue time
// above `overload_queue_ms`, with jobs of other documents in flight: a
// document never runs from its own backlog, which would follow it) while
// another replica is idle (nothing waiting and a queue time under a quarter
// of the bound); it goes to the idle replica with the fewest jobs in flight
// and its affinity moves with it. Its cached KV stays behind (the old
// replica's LRU evicts it), so a move costs one cold prefill: hence only
// towards an idle replica, never between two busy ones.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "runtime/engine/engine_api.h"

namespace ghostd::runtime {

struct RouterConfig {
  int virtual_nodes = 64;                  // ring points per replica
  double overload_queue_ms = 50.0;         // a replica queueing longer than this is overloaded
  size_t max_documents = size_t{1} << 16;  // affinity table entries
  double queue_average_weight = 0.25;      // weight of the newest job in the queue-time average
};

// A replica's load as the router measures it.
struct ReplicaLoad {
  int in_flight = 0;      // submitted and not ended
  int waiting = 0;        // of those, without a first token yet
  double queue_ms = 0;    // see the header comment
  uint64_t routed = 0;    // requests sent here
  uint64_t moved_in = 0;  // documents moved here from an overloaded replica
};

// Thread-safety: thread-safe (one mutex); ReplicaSet calls it from the
// submitting thread and from every replica's engine thread.
class ReplicaRouter {
 public:
  explicit ReplicaRouter(int replicas, RouterConfig config = {});

  int num_replicas() const;
  // Adds a replica (its ring points); documents already routed stay where
  // their KV is. Returns its index.
  int add_replica();

  // The document's place on the ring alone.
  int home(std::string_view document) const;

  struct Decision {
    int replica = 0;
    bool moved = false;  // the document left its overloaded replica
    int from = -1;       // where it was, when moved
  };
  // Where the document's next request goes (and records it).
  Decision route(std::string_view document, Clock::time_point now);
  // The remembered replica of a document, if any.
  std::optional<int> assigned(std::string_view document) const;

  // Load reports. job_submitted returns a ticket for the other two;
  // job_started is the first token (optional), job_ended is called once.
  uint64_t job_submitted(int replica, std::string_view document, Clock::time_point now);
  void job_started(int replica, uint64_t ticket);
  // `queue_ms`: the job's measured submit-to-scheduled time (0 when the
  // engine never scheduled it: then its wait is its age, if it never started).
  void job_ended(int replica, uint64_t ticket, double queue_ms, Clock::time_point now);

  ReplicaLoad load(int replica, Clock::time_point now) const;
  uint64_t moves() const;

 private:
  struct Replica {
    std::map<uint64_t, Clock::time_point> waiting;  // ticket -> submitted; tickets grow with time
    std::map<uint64_t, std::string> documents;      // ticket -> document, of the jobs in flight
    std::unordered_map<std::string, int> in_flight_by_document;
    int in_flight = 0;
    double queue_average_ms = 0;
    uint64_t routed = 0, moved_in = 0;
  };
  struct Assignment {
    int replica = 0;
    std::list<std::string>::iterator lru;  // position in lru_ (front: most recent)
  };

  int home_locked(std::string_view document) const;
  double queue_ms_locked(const Replica& r, Clock::time_point now) const;
  // Overloaded for `document`: by the queue of other documents' jobs.
  bool overloaded_locked(const Replica& r, std::string_view document, Clock::time_point now) const;
  bool idle_locked(const Replica& r, Clock::time_point now) const;
  void add_ring_points_locked(int replica);

  RouterConfig config_;
  mutable std::mutex mu_;
  std::vector<Replica> replicas_;
  std::vector<std::pair<uint64_t, int>> ring_;  // sorted (point, replica)
  std::unordered_map<std::string, Assignment> assigned_;
  std::list<std::string> lru_;
  uint64_t next_ticket_ = 1;
  uint64_t moves_ = 0;
};

// A stable 64-bit hash of bytes (FNV-1a, then a finalizer that spreads the
// bits): the ring must not depend on the standard library's std::hash.
uint64_t stable_hash(std::string_view bytes, uint64_t seed = 0);

}  // namespace ghostd::runtime
