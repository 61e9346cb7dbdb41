#include "runtime/engine/scheduler.h"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <set>
#include <string_view>
#include <tuple>
#include <unordered_map>

namespace ghostd::runtime {

namespace {
double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// A verify's accepted tokens are a path down its draft tree.
[[maybe_unused]] bool tree_path_ok(const StepSequence& s, const std::vector<int32_t>& out, int accepted) {
  std::vector<int32_t> path;
  return fed_tree_path(s.tree_parents, s.tokens, std::span<const int32_t>(out).first(static_cast<size_t>(accepted)),
                       path);
}

int state_rank(SeqState s) {
  switch (s) {
    case SeqState::kRunning:
      return 0;
    case SeqState::kPaused:
      return 1;
    case SeqState::kWaiting:
      return 2;
  }
  return 3;
}
}  // namespace

Scheduler::Scheduler(SchedulerConfig config, BlockPool& pool, PrefixCache* cache)
    : config_(config), pool_(pool), cache_(cache) {
  assert(config_.max_batch_tokens > 0 && config_.max_batch_seqs > 0);
}

Scheduler::~Scheduler() {
  (void)drain(JobStatus::kCancelled, Clock::now());
}

void Scheduler::submit(JobId id, const CompletionJob& job, Clock::time_point now) {
  assert(!jobs_.contains(id));
  Job& j = jobs_[id];
  j.id = id;
  j.priority = job.priority;
  j.deadline = job.deadline;
  j.submitted = now;
  j.document_id = job.document_id;
  j.tenant = job.tenant;
  j.session_id = job.session_id;
  j.cache_salt = job.cache_salt;
  j.tokens = job.prompt;
  j.prompt_len = static_cast<int>(job.prompt.size());
  j.max_new_tokens = job.stop.max_new_tokens;
  j.stop_ids = job.stop.stop_token_ids;
  j.arrival = next_arrival_++;
  j.metrics.prompt_tokens = j.prompt_len;
  const int64_t bs = pool_.block_size();
  const int64_t need = (int64_t{j.prompt_len} + std::max(0, j.max_new_tokens) + bs - 1) / bs;
  if (job.prompt.empty()) {
    j.pending_end = JobStatus::kFailed;
    j.error = "scheduler: job " + std::to_string(id) + " has an empty prompt";
  } else if (need > pool_.num_blocks()) {
    j.pending_end = JobStatus::kFailed;
    j.error = "scheduler: job " + std::to_string(id) + " needs " + std::to_string(need) +
              " KV blocks (prompt " + std::to_string(j.prompt_len) + " + max_new_tokens " +
              std::to_string(j.max_new_tokens) + " tokens, block size " + std::to_string(bs) +
              ") but the KV pool holds only " + std::to_string(pool_.num_blocks());
  } else if (j.max_new_tokens <= 0) {
    j.pending_end = JobStatus::kFinished;
  }
}

void Scheduler::cancel(JobId id) {
  auto it = jobs_.find(id);
  if (it != jobs_.end() && !it->second.pending_end) it->second.pending_end = JobStatus::kCancelled;
}

void Scheduler::stop(JobId id) {
  auto it = jobs_.find(id);
  if (it != jobs_.end() && !it->second.pending_end) it->second.pending_end = JobStatus::kFinished;
}

void Scheduler::set_draft(JobId id, std::vector<int32_t> draft) {
  set_draft_tree(id, DraftTree::chain(std::move(draft)));
}

void Scheduler::set_draft_tree(JobId id, DraftTree draft) {
  assert(draft.check().empty());
  auto it = jobs_.find(id);
  if (it != jobs_.end()) it->second.draft = std::move(draft);
}

int Scheduler::num_in_state(SeqState state) const {
  return static_cast<int>(std::count_if(jobs_.begin(), jobs_.end(),
                                        [&](const auto& kv) { return kv.second.state == state; }));
}

std::optional<SeqState> Scheduler::state(JobId id) const {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return std::nullopt;
  return it->second.state;
}

int Scheduler::prompt_len(JobId id) const {
  auto it = jobs_.find(id);
  return it == jobs_.end() ? 0 : it->second.prompt_len;
}

const std::vector<int32_t>* Scheduler::tokens(JobId id) const {
  auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : &it->second.tokens;
}

void Scheduler::cache_blocks(const Job& job) {
  if (cache_ == nullptr || job.blocks.empty()) return;
  std::span<const int32_t> computed(job.tokens.data(),
                                    static_cast<size_t>(job.blocks.num_tokens()));
  cache_->insert(computed, job.blocks.blocks(), job.document_id, job.cache_salt);
}

EndedJob Scheduler::end_job(Job& job, JobStatus status, Clock::time_point now) {
  // Even a cancelled job's KV is valid: the next keystroke on the document
  // usually wants exactly this prefix.
  if (status != JobStatus::kFailed) cache_blocks(job);
  job.blocks.release(pool_);
  if (config_.share_window_ms > 0) active_[{job.tenant, job.session_id}] = now;  // its session's last job
  EndedJob e;
  e.id = job.id;
  e.result.status = status;
  e.result.error = job.error;
  e.result.tokens.assign(job.tokens.begin() + job.prompt_len, job.tokens.end());
  e.result.metrics = job.metrics;
  e.result.metrics.generated_tokens = job.generated();
  e.result.metrics.total_ms = ms_between(job.submitted, now);
  jobs_.erase(job.id);  // `job` dangles from here
  return e;
}

void Scheduler::evict_job(Job& job) {
  cache_blocks(job);
  job.blocks.release(pool_);
  job.draft = {};
  job.state = SeqState::kWaiting;
}

int Scheduler::reclaimable_blocks(const std::vector<Job*>& order, size_t after) const {
  // A block comes free when every holder among (later jobs, cache) lets go:
  // its pool count equals its holders there. Jobs in the plan are never victims.
  std::unordered_map<BlockId, int> holders;
  for (size_t i = after + 1; i < order.size(); ++i) {
    for (BlockId b : order[i]->blocks.blocks()) ++holders[b];
  }
  if (cache_ != nullptr) {
    std::vector<BlockId> held;
    cache_->collect_held(held);
    for (BlockId b : held) ++holders[b];
  }
  int n = 0;
  for (const auto& [b, count] : holders) n += pool_.ref_count(b) == count ? 1 : 0;
  return n;
}

void Scheduler::make_room(int need, const std::vector<Job*>& order, size_t after, StepPlan& plan) {
  if (cache_ != nullptr && pool_.num_free() < need) cache_->evict(need - pool_.num_free());
  for (size_t i = order.size(); i-- > after + 1 && pool_.num_free() < need;) {
    Job& victim = *order[i];
    if (victim.blocks.empty()) continue;
    evict_job(victim);
    plan.evicted.push_back(victim.id);
    if (cache_ != nullptr && pool_.num_free() < need) cache_->evict(need - pool_.num_free());
  }
}

void Scheduler::forget_inactive(Clock::time_point now) {
  const auto window = std::chrono::milliseconds(std::max(0, config_.share_window_ms));
  std::erase_if(active_, [&](const auto& kv) { return now - kv.second > window; });
}

Scheduler::Shares Scheduler::fair_order(std::vector<Job*>& order) const {
  auto own_key = [](const Job* j) {
    return std::make_tuple(state_rank(j->state), j->deadline, j->arrival);
  };
  // Each session's jobs in its own order; sessions keyed by (priority, tenant, session).
  using SessionKey = std::tuple<int, std::string_view, uint64_t>;
  std::map<SessionKey, std::vector<Job*>> by_session;
  for (Job* j : order)
    by_session[{static_cast<int>(j->priority), j->tenant, j->session_id}].push_back(j);
  std::set<std::pair<std::string_view, uint64_t>> distinct;
  // Per (priority, tenant): its sessions, first job first.
  std::map<std::pair<int, std::string_view>, std::vector<std::vector<Job*>*>> by_tenant;
  for (auto& [key, jobs] : by_session) {
    std::sort(jobs.begin(), jobs.end(),
              [&](const Job* a, const Job* b) { return own_key(a) < own_key(b); });
    by_tenant[{std::get<0>(key), std::get<1>(key)}].push_back(&jobs);
    distinct.insert({std::get<1>(key), std::get<2>(key)});
  }
  for (auto& [key, sess] : by_tenant) {
    std::sort(sess.begin(), sess.end(),
              [&](const std::vector<Job*>* a, const std::vector<Job*>* b) {
                return own_key(a->front()) < own_key(b->front());
              });
    // Sessions take turns within the tenant: the k-th job of the i-th session
    // is the tenant's (k * sessions + i)-th; tenants then take turns by that.
    for (size_t i = 0; i < sess.size(); ++i) {
      for (size_t k = 0; k < sess[i]->size(); ++k) (*sess[i])[k]->round = k * sess.size() + i;
    }
  }
  std::sort(order.begin(), order.end(), [&](const Job* a, const Job* b) {
    return std::make_tuple(static_cast<int>(a->priority), a->round, own_key(a)) <
           std::make_tuple(static_cast<int>(b->priority), b->round, own_key(b));
  });
  // Caps: equal per tenant, then equal (rounded up) per session of a tenant,
  // over the sessions with jobs, and for a backlog over the recent ones too.
  auto caps_over = [&](const std::set<std::pair<std::string_view, uint64_t>>& sessions) {
    Caps caps;
    std::map<std::string_view, int> sessions_of;
    for (const auto& [tenant, session] : sessions) ++sessions_of[tenant];
    if (sessions.size() <= 1) return caps;
    const int tenants = static_cast<int>(sessions_of.size());
    const int bs = pool_.block_size();
    const int tenant_tokens = std::max(bs, config_.max_batch_tokens / tenants);
    const int tenant_seqs = std::max(1, config_.max_batch_seqs / tenants);
    for (const auto& [tenant, n] : sessions_of) {
      caps.tenant[tenant] = {tenant_tokens, tenant_seqs};
      caps.session_of_tenant[tenant] = {std::max(bs, (tenant_tokens + n - 1) / n),
                                        std::max(1, (tenant_seqs + n - 1) / n)};
    }
    caps.limited = true;
    return caps;
  };
  Shares shares;
  shares.now = caps_over(distinct);
  std::map<std::pair<std::string_view, uint64_t>, size_t> jobs_of;  // over every priority class
  for (const auto& [key, jobs] : by_session) jobs_of[{std::get<1>(key), std::get<2>(key)}] += jobs.size();
  for (const auto& [session, n] : jobs_of)
    if (n > 1) shares.backlogged.insert(session);
  if (!shares.backlogged.empty()) {
    auto recent = distinct;  // with the sessions whose last job ended within the window
    for (const auto& [key, ended] : active_) recent.insert({key.first, key.second});
    shares.backlog = caps_over(recent);
  }
  return shares;
}

StepPlan Scheduler::schedule(Clock::time_point now) {
  StepPlan plan;
  // 1. Leavers.
  std::vector<JobId> leaving;
  for (auto& [id, job] : jobs_) {
    if (!job.pending_end && now >= job.deadline) job.pending_end = JobStatus::kExpired;
    if (job.pending_end) leaving.push_back(id);
  }
  for (JobId id : leaving) {
    Job& job = jobs_.at(id);
    plan.ended.push_back(end_job(job, *job.pending_end, now));
  }

  // 2. Order.
  std::vector<Job*> order;
  order.reserve(jobs_.size());
  for (auto& [id, job] : jobs_) order.push_back(&job);
  forget_inactive(now);
  const Shares shares = fair_order(order);

  // 3./4. Fill the batch.
  const int bs = pool_.block_size();
  int budget = config_.max_batch_tokens;
  // Tokens and sequences each tenant and session used in this step.
  std::map<std::string_view, Share> tenant_used;
  std::map<std::pair<std::string_view, uint64_t>, Share> session_used;
  bool memory_blocked = false;
  std::vector<uint8_t> in_plan(order.size(), 0);
  for (size_t i = 0; i < order.size(); ++i) {
    if (budget == 0 || static_cast<int>(plan.seqs.size()) == config_.max_batch_seqs) break;
    Job& job = *order[i];
    const bool admitting = job.blocks.empty();
    if (admitting && memory_blocked) continue;
    // Its owner's share of the step: what is left of the tenant's and the session's.
    int share_left = budget;
    Share& tu = tenant_used[job.tenant];
    Share& su = session_used[{job.tenant, job.session_id}];
    const Caps& caps = shares.backlogged.contains({job.tenant, job.session_id}) ? shares.backlog : shares.now;
    if (caps.limited) {
      const Share& tc = caps.tenant.at(job.tenant);
      const Share& sc = caps.session_of_tenant.at(job.tenant);
      share_left = std::min({share_left, tc.tokens - tu.tokens, sc.tokens - su.tokens});
      if (share_left <= 0 || tu.seqs >= tc.seqs || su.seqs >= sc.seqs) continue;
    }
    int reused = 0;
    if (admitting && cache_ != nullptr) {
      std::span<const int32_t> all(job.tokens);
      PrefixMatch m = cache_->match(all.first(all.size() - 1), job.document_id, job.cache_salt);
      reused = m.n_tokens;
      if (m.n_tokens > 0) job.blocks.adopt(std::move(m.blocks), m.n_tokens, bs);
    }
    const int computed = job.blocks.num_tokens();
    const int pending = static_cast<int>(job.tokens.size()) - computed;
    assert(pending >= 1);
    int n = 0;
    int k = 0;
    if (pending == 1) {
      const int remaining_new = job.max_new_tokens - job.generated();
      k = std::max(0, std::min({static_cast<int>(job.draft.size()), config_.max_draft_tokens,
                                share_left - 1, remaining_new - 1}));
      n = 1 + k;
    } else {
      n = std::min(pending, share_left);
    }
    if (job.blocks.blocks_needed(pool_, n) > pool_.num_free()) {
      const int avail = pool_.num_free() + reclaimable_blocks(order, i);
      if (pending > 1) {
        while (n > 0 && job.blocks.blocks_needed(pool_, n) > avail) n -= std::min(n, bs);
      } else {
        while (k > 0 && job.blocks.blocks_needed(pool_, 1 + k) > avail) --k;
        n = job.blocks.blocks_needed(pool_, 1 + k) > avail ? 0 : 1 + k;
      }
      if (n > 0) make_room(job.blocks.blocks_needed(pool_, n), order, i, plan);
    }
    std::vector<BlockCopy> copies;
    if (n == 0 || !job.blocks.append(pool_, n, copies)) {
      memory_blocked = true;
      if (admitting) job.blocks.release(pool_);  // undo the prefix adoption
      continue;
    }
    plan.copies.insert(plan.copies.end(), copies.begin(), copies.end());
    if (admitting && !job.admitted_once) {
      job.admitted_once = true;
      job.metrics.reused_tokens = std::min(reused, job.prompt_len);
      job.metrics.queue_ms = ms_between(job.submitted, now);
    }
    StepSequence s;
    s.id = job.id;
    s.start_pos = computed;
    s.tokens.assign(job.tokens.begin() + computed, job.tokens.begin() + computed + (n - k));
    s.tokens.insert(s.tokens.end(), job.draft.tokens.begin(), job.draft.tokens.begin() + k);
    s.block_table.assign(job.blocks.blocks().begin(), job.blocks.blocks().end());
    s.num_draft = k;
    bool chain = true;
    for (int i = 0; i < k; ++i) chain = chain && job.draft.parents[static_cast<size_t>(i)] == i - 1;
    if (!chain) {
      s.tree_parents.push_back(-1);
      for (int i = 0; i < k; ++i) s.tree_parents.push_back(job.draft.parents[static_cast<size_t>(i)] + 1);
    }
    s.all_logits = k > 0;
    s.samples = computed + (n - k) == static_cast<int>(job.tokens.size());
    if (pending > 1) plan.num_prefill_tokens += n;
    plan.num_tokens += n;
    budget -= n;
    tu.tokens += n;
    su.tokens += n;
    ++tu.seqs;
    ++su.seqs;
    job.draft = {};  // proposed against this position only
    plan.seqs.push_back(std::move(s));
    in_plan[i] = 1;
  }

  // 5. States.
  for (size_t i = 0; i < order.size(); ++i) {
    Job& job = *order[i];
    if (in_plan[i]) {
      job.state = SeqState::kRunning;
      job.metrics.max_batch_size =
          std::max(job.metrics.max_batch_size, static_cast<int>(plan.seqs.size()));
    } else if (!job.blocks.empty()) {
      if (job.state == SeqState::kRunning) plan.paused.push_back(job.id);
      job.state = SeqState::kPaused;
    } else {
      job.state = SeqState::kWaiting;
    }
  }
  return plan;
}

CommitResult Scheduler::commit(const StepPlan& plan, std::span<const std::vector<int32_t>> sampled,
                               Clock::time_point now) {
  assert(sampled.size() == plan.seqs.size());
  CommitResult result;
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    const StepSequence& s = plan.seqs[i];
    auto it = jobs_.find(s.id);
    assert(it != jobs_.end());
    Job& job = it->second;
    const int fed = static_cast<int>(s.tokens.size());
    assert(job.blocks.num_tokens() == s.start_pos + fed);
    const std::vector<int32_t>& out = sampled[i];
    if (job.pending_end) {
      // Cancelled mid-step: keep the KV of real tokens, drop the rest.
      const int valid = s.start_pos + fed - s.num_draft;
      job.blocks.truncate(pool_, std::min(valid, static_cast<int>(job.tokens.size()) - 1));
      continue;
    }
    if (!s.samples) {
      assert(out.empty());
      cache_blocks(job);  // chunk by chunk, so concurrent jobs on the document share it
      continue;
    }
    assert(!out.empty() && static_cast<int>(out.size()) <= s.num_draft + 1);
    const int accepted = static_cast<int>(out.size()) - 1;
    // The accepted prefix must be the drafts themselves (positions 1..k of
    // the feed), or a path down the tree.
    assert(s.tree_parents.empty() ? std::equal(out.begin(), out.begin() + accepted, s.tokens.begin() + 1)
                                  : tree_path_ok(s, out, accepted));
    if (s.num_draft > 0) {
      job.blocks.truncate(pool_, s.start_pos + 1 + accepted);
      job.metrics.draft_proposed += s.num_draft;
      job.metrics.draft_accepted += accepted;
    }
    const bool prefill_done = s.num_draft == 0 && fed > 1;
    CommitResult::Update update{s.id, {}};
    bool finished = false;
    for (int32_t t : out) {
      if (std::find(job.stop_ids.begin(), job.stop_ids.end(), t) != job.stop_ids.end()) {
        finished = true;
        break;
      }
      job.tokens.push_back(t);
      update.new_tokens.push_back(t);
      if (job.generated() >= job.max_new_tokens) {
        finished = true;
        break;
      }
    }
    // Never keep KV past the last real token (a stop inside accepted drafts).
    const int max_kv = static_cast<int>(job.tokens.size()) - (finished ? 0 : 1);
    if (job.blocks.num_tokens() > max_kv) job.blocks.truncate(pool_, max_kv);
    if (!update.new_tokens.empty() && !job.has_first_token) {
      job.has_first_token = true;
      job.metrics.ttft_ms = ms_between(job.submitted, now);
    }
    if (!update.new_tokens.empty()) result.updates.push_back(std::move(update));
    if (finished) {
      result.ended.push_back(end_job(job, JobStatus::kFinished, now));
    } else if (prefill_done) {
      cache_blocks(job);  // later requests on this document reuse the prompt now
    }
  }
  return result;
}

std::vector<EndedJob> Scheduler::fail_step(const StepPlan& plan, const std::string& message,
                                           Clock::time_point now) {
  std::vector<EndedJob> ended;
  for (const StepSequence& s : plan.seqs) {
    auto it = jobs_.find(s.id);
    if (it == jobs_.end()) continue;
    it->second.error = message;
    ended.push_back(end_job(it->second, JobStatus::kFailed, now));
  }
  return ended;
}

std::vector<EndedJob> Scheduler::drain(JobStatus status, Clock::time_point now) {
  std::vector<EndedJob> ended;
  while (!jobs_.empty()) {
    Job& job = jobs_.begin()->second;
    ended.push_back(end_job(job, job.pending_end.value_or(status), now));
  }
  return ended;
}

Status Scheduler::validate() const {
  std::vector<BlockId> held;
  const int bs = pool_.block_size();
  for (const auto& [id, job] : jobs_) {
    const std::string where = "Scheduler: job " + std::to_string(id);
    const int computed = job.blocks.num_tokens();
    if ((job.state == SeqState::kWaiting) != job.blocks.empty()) {
      return make_error(where + ": waiting iff it holds no KV blocks");
    }
    if (computed > static_cast<int>(job.tokens.size()) - 1) {
      return make_error(where + ": KV covers " + std::to_string(computed) + " of " +
                        std::to_string(job.tokens.size()) +
                        " tokens, expected at most all but one");
    }
    if (static_cast<int>(job.blocks.blocks().size()) != (computed + bs - 1) / bs) {
      return make_error(where + ": block table size does not match its token count");
    }
    if (job.generated() > job.max_new_tokens) {
      return make_error(where + ": generated more than max_new_tokens");
    }
    held.insert(held.end(), job.blocks.blocks().begin(), job.blocks.blocks().end());
  }
  if (cache_ != nullptr) {
    GHOSTD_TRY_STATUS(cache_->validate());
    cache_->collect_held(held);
  }
  return pool_.validate(held);
}

}  // namespace ghostd::runtime
