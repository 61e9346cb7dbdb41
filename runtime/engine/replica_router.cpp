#include "runtime/engine/replica_router.h"

#include <algorithm>
#include <cassert>
#include <limits>

namespace ghostd::runtime {

uint64_t stable_hash(std::string_view bytes, uint64_t seed) {
  uint64_t h = 0xcbf29ce484222325ull ^ seed;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  // splitmix64's finalizer: FNV alone leaves similar names (file1.py,
  // file2.py) close together on the ring.
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

ReplicaRouter::ReplicaRouter(int replicas, RouterConfig config) : config_(config) {
  assert(replicas >= 1 && config_.virtual_nodes >= 1);
  for (int i = 0; i < replicas; ++i) {
    replicas_.emplace_back();
    add_ring_points_locked(i);
  }
}

int ReplicaRouter::num_replicas() const {
  std::lock_guard lock(mu_);
  return static_cast<int>(replicas_.size());
}

void ReplicaRouter::add_ring_points_locked(int replica) {
  const std::string name = "replica-" + std::to_string(replica);
  for (int v = 0; v < config_.virtual_nodes; ++v) {
    ring_.emplace_back(stable_hash(name, static_cast<uint64_t>(v) + 1), replica);
  }
  std::sort(ring_.begin(), ring_.end());
}

int ReplicaRouter::add_replica() {
  std::lock_guard lock(mu_);
  replicas_.emplace_back();
  const int index = static_cast<int>(replicas_.size()) - 1;
  add_ring_points_locked(index);
  return index;
}

int ReplicaRouter::home_locked(std::string_view document) const {
  if (replicas_.size() == 1) return 0;
  const uint64_t h = stable_hash(document);
  auto it = std::lower_bound(ring_.begin(), ring_.end(),
                             std::make_pair(h, std::numeric_limits<int>::min()));
  if (it == ring_.end()) it = ring_.begin();  // the ring wraps around
  return it->second;
}

int ReplicaRouter::home(std::string_view document) const {
  std::lock_guard lock(mu_);
  return home_locked(document);
}

double ReplicaRouter::queue_ms_locked(const Replica& r, Clock::time_point now) const {
  if (r.in_flight == 0) return 0;
  double oldest = 0;
  if (!r.waiting.empty())
    oldest = std::chrono::duration<double, std::milli>(now - r.waiting.begin()->second).count();
  return std::max(oldest, r.queue_average_ms);
}

bool ReplicaRouter::overloaded_locked(const Replica& r, std::string_view document,
                                      Clock::time_point now) const {
  if (queue_ms_locked(r, now) <= config_.overload_queue_ms) return false;
  auto own = r.in_flight_by_document.find(std::string(document));
  return r.in_flight > (own == r.in_flight_by_document.end() ? 0 : own->second);
}

bool ReplicaRouter::idle_locked(const Replica& r, Clock::time_point now) const {
  return r.waiting.empty() && queue_ms_locked(r, now) <= config_.overload_queue_ms / 4;
}

ReplicaRouter::Decision ReplicaRouter::route(std::string_view document, Clock::time_point now) {
  std::lock_guard lock(mu_);
  Decision d;
  if (replicas_.size() == 1) {
    ++replicas_[0].routed;
    return d;
  }
  std::string key(document);
  auto it = assigned_.find(key);
  d.replica = it != assigned_.end() ? it->second.replica : home_locked(document);
  if (overloaded_locked(replicas_[static_cast<size_t>(d.replica)], document, now)) {
    // The idle replica with the fewest jobs in flight, if any.
    int best = -1;
    for (int i = 0; i < static_cast<int>(replicas_.size()); ++i) {
      const Replica& r = replicas_[static_cast<size_t>(i)];
      if (i == d.replica || !idle_locked(r, now)) continue;
      if (best < 0 || r.in_flight < replicas_[static_cast<size_t>(best)].in_flight) best = i;
    }
    if (best >= 0) {
      d.moved = true;
      d.from = d.replica;
      d.replica = best;
      ++replicas_[static_cast<size_t>(best)].moved_in;
      ++moves_;
    }
  }
  ++replicas_[static_cast<size_t>(d.replica)].routed;
  if (it != assigned_.end()) {
    it->second.replica = d.replica;
    lru_.splice(lru_.begin(), lru_, it->second.lru);
  } else {
    if (assigned_.size() >= config_.max_documents && !lru_.empty()) {
      assigned_.erase(lru_.back());
      lru_.pop_back();
    }
    lru_.push_front(key);
    assigned_.emplace(std::move(key), Assignment{d.replica, lru_.begin()});
  }
  return d;
}

std::optional<int> ReplicaRouter::assigned(std::string_view document) const {
  std::lock_guard lock(mu_);
  auto it = assigned_.find(std::string(document));
  if (it == assigned_.end()) return std::nullopt;
  return it->second.replica;
}

uint64_t ReplicaRouter::job_submitted(int replica, std::string_view document,
                                      Clock::time_point now) {
  std::lock_guard lock(mu_);
  Replica& r = replicas_.at(static_cast<size_t>(replica));
  const uint64_t ticket = next_ticket_++;
  r.waiting.emplace(ticket, now);
  auto doc = r.documents.emplace(ticket, std::string(document)).first;
  ++r.in_flight_by_document[doc->second];
  ++r.in_flight;
  return ticket;
}

void ReplicaRouter::job_started(int replica, uint64_t ticket) {
  std::lock_guard lock(mu_);
  replicas_.at(static_cast<size_t>(replica)).waiting.erase(ticket);
}

void ReplicaRouter::job_ended(int replica, uint64_t ticket, double queue_ms,
                              Clock::time_point now) {
  std::lock_guard lock(mu_);
  Replica& r = replicas_.at(static_cast<size_t>(replica));
  auto w = r.waiting.find(ticket);
  if (w != r.waiting.end()) {
    // Never started: it waited all its life unless the engine says otherwise.
    if (queue_ms <= 0)
      queue_ms = std::chrono::duration<double, std::milli>(now - w->second).count();
    r.waiting.erase(w);
  }
  if (auto doc = r.documents.find(ticket); doc != r.documents.end()) {
    auto count = r.in_flight_by_document.find(doc->second);
    if (count != r.in_flight_by_document.end() && --count->second == 0)
      r.in_flight_by_document.erase(count);
    r.documents.erase(doc);
  }
  assert(r.in_flight > 0);
  --r.in_flight;
  const double a = config_.queue_average_weight;
  r.queue_average_ms = a * queue_ms + (1 - a) * r.queue_average_ms;
  // A drained replica starts its next busy period without the last one's queue.
  if (r.in_flight == 0) r.queue_average_ms = 0;
}

ReplicaLoad ReplicaRouter::load(int replica, Clock::time_point now) const {
  std::lock_guard lock(mu_);
  const Replica& r = replicas_.at(static_cast<size_t>(replica));
  return {r.in_flight, static_cast<int>(r.waiting.size()), queue_ms_locked(r, now), r.routed,
          r.moved_in};
}

uint64_t ReplicaRouter::moves() const {
  std::lock_guard lock(mu_);
  return moves_;
}

}  // namespace ghostd::runtime
