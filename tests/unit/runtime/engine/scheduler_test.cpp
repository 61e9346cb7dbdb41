#include "runtime/engine/scheduler.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <vector>

using namespace ghostd::runtime;

namespace {

constexpr int kVocab = 50;

// The fake model's greedy next token depends only on (position, token), so a
// job's output is the same however it is batched, paused or recomputed.
int32_t next_token(int pos, int32_t tok) {
  return (tok * 7 + pos * 3 + 1) % kVocab;
}

std::vector<int32_t> reference(const CompletionJob& job) {
  std::vector<int32_t> all = job.prompt, out;
  while (static_cast<int>(out.size()) < job.stop.max_new_tokens) {
    int32_t t = next_token(static_cast<int>(all.size()) - 1, all.back());
    if (std::count(job.stop.stop_token_ids.begin(), job.stop.stop_token_ids.end(), t)) break;
    out.push_back(t);
    all.push_back(t);
  }
  return out;
}

// Stands in for the device: a KV buffer of token ids. Every step checks that
// the KV a sequence reads holds exactly its tokens and that no shared block is
// written (copy-on-write), then writes the fed tokens and "samples".
struct FakeDevice {
  std::vector<std::vector<int32_t>> kv;
  int bs;
  FakeDevice(int num_blocks, int block_size)
      : kv(num_blocks, std::vector<int32_t>(block_size, -1)), bs(block_size) {}

  std::vector<std::vector<int32_t>> run(const StepPlan& plan, const Scheduler& sched,
                                        const BlockPool& pool) {
    for (const BlockCopy& c : plan.copies) {
      std::copy_n(kv[c.src].begin(), c.n_tokens, kv[c.dst].begin());
    }
    std::vector<std::vector<int32_t>> sampled;
    std::set<BlockId> written;
    for (const StepSequence& s : plan.seqs) {
      const std::vector<int32_t>* toks = sched.tokens(s.id);
      REQUIRE(toks != nullptr);
      const int fed = static_cast<int>(s.tokens.size());
      REQUIRE(static_cast<int>(s.block_table.size()) == (s.start_pos + fed + bs - 1) / bs);
      for (int p = 0; p < s.start_pos; ++p) {
        int32_t got = kv[s.block_table[p / bs]][p % bs];
        if (got != (*toks)[p])
          FAIL("job " << s.id << " reads token " << got << " at " << p << ", expected "
                      << (*toks)[p]);
      }
      for (int j = 0; j < fed - s.num_draft; ++j) REQUIRE(s.tokens[j] == (*toks)[s.start_pos + j]);
      for (int j = 0; j < fed; ++j) {
        int p = s.start_pos + j;
        BlockId b = s.block_table[p / bs];
        REQUIRE(pool.ref_count(b) == 1);  // never write a shared block
        kv[b][p % bs] = s.tokens[j];
        written.insert(b);
      }
      std::vector<int32_t> out;
      if (s.samples) {
        int32_t pred =
            next_token(s.start_pos + fed - s.num_draft - 1, s.tokens[fed - s.num_draft - 1]);
        for (int j = 1; j <= s.num_draft && s.tokens[j] == pred; ++j) {
          out.push_back(pred);
          pred = next_token(s.start_pos + j, s.tokens[j]);
        }
        out.push_back(pred);
      }
      sampled.push_back(std::move(out));
    }
    return sampled;
  }
};

CompletionJob make_job(std::vector<int32_t> prompt, int max_new,
                       Priority prio = Priority::kInteractive, std::string doc = "doc") {
  CompletionJob j;
  j.prompt = std::move(prompt);
  j.stop.max_new_tokens = max_new;
  j.priority = prio;
  j.document_id = std::move(doc);
  return j;
}

std::vector<int32_t> seq_tokens(int n, int seed) {
  std::vector<int32_t> v(n);
  for (int i = 0; i < n; ++i) v[i] = (seed * 13 + i * 5) % kVocab;
  return v;
}

// Drives steps until all jobs end; collects results.
struct Harness {
  BlockPool pool;
  PrefixCache cache;
  Scheduler sched;
  FakeDevice dev;
  Clock::time_point now = Clock::time_point{} + std::chrono::seconds(1);
  std::map<JobId, JobResult> results;
  std::map<JobId, std::vector<int32_t>> streamed;
  int steps = 0;

  Harness(int blocks, int bs, SchedulerConfig cfg = {})
      : pool(blocks, bs), cache(pool), sched(cfg, pool, &cache), dev(blocks, bs) {}

  StepPlan step() {
    now += std::chrono::milliseconds(1);
    StepPlan plan = sched.schedule(now);
    for (auto& e : plan.ended) results[e.id] = e.result;
    auto sampled = dev.run(plan, sched, pool);
    CommitResult r = sched.commit(plan, sampled, now);
    for (auto& u : r.updates) {
      auto& v = streamed[u.id];
      v.insert(v.end(), u.new_tokens.begin(), u.new_tokens.end());
    }
    for (auto& e : r.ended) results[e.id] = e.result;
    Status st = sched.validate();
    if (!st.ok()) FAIL(st.message());
    ++steps;
    return plan;
  }
  void run_all(int max_steps = 10000) {
    while (sched.num_jobs() > 0 && steps < max_steps) step();
    REQUIRE(sched.num_jobs() == 0);
  }
  void check_no_leaks() {
    cache.clear();
    CHECK(pool.num_free() == pool.num_blocks());
    CHECK(pool.validate(std::vector<BlockId>{}).ok());
  }
};

}  // namespace

TEST_CASE("chunked prefill, decode and finish on max tokens") {
  Harness h(64, 4, SchedulerConfig{.max_batch_tokens = 8});
  CompletionJob job = make_job(seq_tokens(20, 1), 5);
  h.sched.submit(1, job, h.now);
  std::vector<int> fed;
  while (h.sched.num_jobs() > 0) {
    StepPlan p = h.step();
    if (!p.seqs.empty()) fed.push_back(static_cast<int>(p.seqs[0].tokens.size()));
  }
  CHECK(fed == std::vector<int>{8, 8, 4, 1, 1, 1, 1});
  REQUIRE(h.results.count(1));
  CHECK(h.results[1].status == JobStatus::kFinished);
  CHECK(h.results[1].tokens == reference(job));
  CHECK(h.streamed[1] == reference(job));
  CHECK(h.results[1].metrics.generated_tokens == 5);
  h.check_no_leaks();
}

TEST_CASE("a stop token ends the job and is not emitted") {
  Harness h(64, 4);
  CompletionJob job = make_job(seq_tokens(6, 2), 30);
  std::vector<int32_t> full = reference(job);
  job.stop.stop_token_ids = {full[3]};
  auto expect = reference(job);
  CHECK(expect.size() < 4);
  h.sched.submit(1, job, h.now);
  h.run_all();
  CHECK(h.results[1].tokens == expect);
  h.check_no_leaks();
}

TEST_CASE("a second request on a document reuses the cached prefix") {
  Harness h(64, 4);
  CompletionJob a = make_job(seq_tokens(18, 3), 3);
  h.sched.submit(1, a, h.now);
  h.run_all();
  CompletionJob b = a;
  b.prompt.push_back(7);  // one typed token
  h.sched.submit(2, b, h.now);
  StepPlan p = h.step();
  REQUIRE(p.seqs.size() == 1);
  // 18 prompt + 3 generated were cached in whole blocks (20 tokens); b shares 18 + partial.
  CHECK(p.seqs[0].start_pos == 18);
  CHECK(p.seqs[0].tokens.size() == 1);
  h.run_all();
  CHECK(h.results[2].metrics.reused_tokens == 18);
  CHECK(h.results[2].tokens == reference(b));
  h.check_no_leaks();
}

TEST_CASE("verify steps accept correct drafts and roll back wrong ones") {
  Harness h(64, 4);
  CompletionJob job = make_job(seq_tokens(9, 4), 12);
  auto expect = reference(job);
  h.sched.submit(1, job, h.now);
  h.step();  // prefill
  // Right drafts: 4 proposed, all accepted plus one bonus token.
  h.sched.set_draft(1, {expect[1], expect[2], expect[3], expect[4]});
  StepPlan p = h.step();
  CHECK(p.seqs[0].num_draft == 4);
  CHECK(p.seqs[0].all_logits);
  CHECK(h.streamed[1].size() == 6);
  // Wrong second draft: one accepted, then the sampled token.
  h.sched.set_draft(1, {expect[6], (expect[7] + 1) % kVocab, 3});
  h.step();
  CHECK(h.streamed[1].size() == 8);
  h.run_all();
  CHECK(h.results[1].tokens == expect);
  CHECK(h.results[1].metrics.draft_proposed == 7);
  CHECK(h.results[1].metrics.draft_accepted == 5);
  h.check_no_leaks();
}

TEST_CASE("a higher-priority job takes a slot within one step; the paused job keeps its KV") {
  Harness h(64, 4, SchedulerConfig{.max_batch_seqs = 2});
  CompletionJob bg1 = make_job(seq_tokens(8, 5), 20, Priority::kBackground, "a");
  CompletionJob bg2 = make_job(seq_tokens(8, 6), 20, Priority::kBackground, "b");
  h.sched.submit(1, bg1, h.now);
  h.sched.submit(2, bg2, h.now);
  h.step();
  h.step();
  CompletionJob fg = make_job(seq_tokens(5, 7), 4, Priority::kInteractive, "c");
  h.sched.submit(3, fg, h.now);
  StepPlan p = h.step();
  std::vector<JobId> ids;
  for (auto& s : p.seqs) ids.push_back(s.id);
  CHECK(std::count(ids.begin(), ids.end(), 3) == 1);
  REQUIRE(p.paused.size() == 1);
  CHECK(p.paused[0] == 2);  // the later of the two background jobs
  CHECK(h.sched.state(2) == SeqState::kPaused);
  CHECK(p.evicted.empty());
  h.run_all();
  CHECK(h.results[3].status == JobStatus::kFinished);
  CHECK(h.results[1].tokens == reference(bg1));
  CHECK(h.results[2].tokens == reference(bg2));
  CHECK(h.results[3].tokens == reference(fg));
  h.check_no_leaks();
}

TEST_CASE("memory pressure evicts the lower-priority job, which is recomputed later") {
  // 8 blocks of 4 = 32 token slots; the background job holds 6 blocks.
  Harness h(8, 4);
  CompletionJob bg = make_job(seq_tokens(20, 8), 4, Priority::kBackground, "bg");
  h.sched.submit(1, bg, h.now);
  h.step();
  CompletionJob fg = make_job(seq_tokens(16, 9), 4, Priority::kInteractive, "fg");
  h.sched.submit(2, fg, h.now);
  StepPlan p = h.step();
  REQUIRE(p.seqs.size() == 1);
  CHECK(p.seqs[0].id == 2);
  CHECK(p.evicted == std::vector<JobId>{1});
  CHECK(h.sched.state(1) == SeqState::kWaiting);
  h.run_all();
  CHECK(h.results[1].status == JobStatus::kFinished);
  CHECK(h.results[1].tokens == reference(bg));
  CHECK(h.results[2].tokens == reference(fg));
  h.check_no_leaks();
}

TEST_CASE("cancelled and expired jobs leave in the same step and return their blocks") {
  Harness h(32, 4);
  CompletionJob a = make_job(seq_tokens(10, 1), 50);
  CompletionJob b = make_job(seq_tokens(10, 2), 50);
  b.deadline = h.now + std::chrono::milliseconds(3);
  h.sched.submit(1, a, h.now);
  h.sched.submit(2, b, h.now);
  h.step();
  h.sched.cancel(1);
  StepPlan p = h.step();
  REQUIRE(p.ended.size() == 1);
  CHECK(p.ended[0].id == 1);
  CHECK(p.ended[0].result.status == JobStatus::kCancelled);
  CHECK(h.sched.state(1) == std::nullopt);
  p = h.step();
  REQUIRE(p.ended.size() == 1);
  CHECK(p.ended[0].result.status == JobStatus::kExpired);
  CHECK(p.seqs.empty());
  // Only the prefix cache still holds blocks.
  CHECK(h.pool.num_used() == h.cache.num_cached_blocks());
  h.check_no_leaks();
}

TEST_CASE("a job that can never fit fails with a clear error; the rest keep running") {
  Harness h(4, 4);  // 16 token slots
  h.sched.submit(1, make_job(seq_tokens(14, 1), 8), h.now);
  h.sched.submit(2, make_job({}, 8), h.now);
  CompletionJob ok = make_job(seq_tokens(6, 2), 4);
  h.sched.submit(3, ok, h.now);
  h.run_all();
  CHECK(h.results[1].status == JobStatus::kFailed);
  CHECK(h.results[1].error ==
        "scheduler: job 1 needs 6 KV blocks (prompt 14 + max_new_tokens 8 tokens, block size 4) "
        "but the KV pool holds only 4");
  CHECK(h.results[2].status == JobStatus::kFailed);
  CHECK(h.results[2].error.find("empty prompt") != std::string::npos);
  CHECK(h.results[3].tokens == reference(ok));
  h.check_no_leaks();
}

TEST_CASE("randomized stress: submits, cancels, deadlines, drafts under memory pressure") {
  for (uint32_t seed : {1u, 2u, 3u}) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    SchedulerConfig cfg{.max_batch_tokens = 32, .max_batch_seqs = 6, .max_draft_tokens = 4};
    Harness h(40, 4, cfg);  // 160 slots: pressure with a handful of jobs
    std::map<JobId, CompletionJob> jobs;
    JobId next_id = 1;
    std::vector<std::vector<int32_t>> docs;
    for (int d = 0; d < 5; ++d) docs.push_back(seq_tokens(40, d + 11));
    int evictions = 0, pauses = 0, verifies = 0;
    std::vector<JobId> whole_pool_jobs;
    for (int step = 0; step < 3000; ++step) {
      if (rng() % 3 == 0) {
        int d = static_cast<int>(rng() % docs.size());
        int len = 1 + static_cast<int>(rng() % 40);
        std::vector<int32_t> prompt(docs[d].begin(), docs[d].begin() + len);
        if (rng() % 2) prompt.push_back(static_cast<int32_t>(rng() % kVocab));  // an edit
        CompletionJob j = make_job(prompt, 1 + static_cast<int>(rng() % 24),
                                   static_cast<Priority>(rng() % 3), "doc" + std::to_string(d));
        if (rng() % 4 == 0) j.stop.stop_token_ids = {static_cast<int32_t>(rng() % kVocab)};
        if (rng() % 5 == 0) j.deadline = h.now + std::chrono::milliseconds(rng() % 40);
        if (rng() % 50 == 0) j.stop.max_new_tokens = 200;  // can never fit
        if (rng() % 100 == 0) {  // needs the whole pool: must still finish
          j.priority = Priority::kInteractive;
          j.stop.max_new_tokens = 160 - static_cast<int>(j.prompt.size());
          j.stop.stop_token_ids.clear();
          j.deadline = Clock::time_point::max();
          whole_pool_jobs.push_back(next_id);
        }
        jobs[next_id] = j;
        h.sched.submit(next_id++, j, h.now);
      }
      if (rng() % 8 == 0) {
        std::vector<JobId> live;
        for (auto& [id, job] : jobs) {
          bool whole = std::count(whole_pool_jobs.begin(), whole_pool_jobs.end(), id) > 0;
          if (h.sched.tokens(id) != nullptr && !whole) live.push_back(id);
        }
        if (!live.empty()) h.sched.cancel(live[rng() % live.size()]);
      }
      // Drafts: sometimes right, sometimes wrong.
      for (auto& [id, job] : jobs) {
        const auto* toks = h.sched.tokens(id);
        if (toks == nullptr || rng() % 3 != 0) continue;
        auto ref = reference(job);
        size_t gen = toks->size() - job.prompt.size();
        std::vector<int32_t> draft;
        for (size_t k = gen + 1; k < ref.size() && draft.size() < 5; ++k) draft.push_back(ref[k]);
        if (!draft.empty() && rng() % 2) draft[rng() % draft.size()] = (draft[0] + 1) % kVocab;
        h.sched.set_draft(id, draft);
      }
      StepPlan p = h.step();
      evictions += static_cast<int>(p.evicted.size());
      pauses += static_cast<int>(p.paused.size());
      for (auto& s : p.seqs) verifies += s.num_draft > 0;
      // A step is filled in priority order: a class never follows a lower one.
      for (size_t i = 1; i < p.seqs.size(); ++i) {
        CHECK(jobs[p.seqs[i - 1].id].priority <= jobs[p.seqs[i].id].priority);
      }
      CHECK(p.num_tokens <= cfg.max_batch_tokens);
      CHECK(static_cast<int>(p.seqs.size()) <= cfg.max_batch_seqs);
    }
    h.run_all(100000);
    CHECK(h.results.size() == jobs.size());
    std::map<JobStatus, int> by_status;
    long prompt_tokens = 0, reused_tokens = 0;
    for (auto& [id, job] : jobs) {
      const JobResult& r = h.results[id];
      ++by_status[r.status];
      prompt_tokens += r.metrics.prompt_tokens;
      reused_tokens += r.metrics.reused_tokens;
      auto ref = reference(job);
      // Every job ends once; what it produced is a prefix of the solo greedy run.
      CHECK(r.tokens.size() <= ref.size());
      CHECK(std::equal(r.tokens.begin(), r.tokens.end(), ref.begin()));
      if (r.status == JobStatus::kFinished) CHECK(r.tokens == ref);
      if (r.status == JobStatus::kFailed) CHECK(job.stop.max_new_tokens == 200);
    }
    MESSAGE("seed " << seed << ": " << jobs.size() << " jobs, " << h.steps << " steps, "
                    << evictions << " evictions, " << pauses << " pauses, " << verifies
                    << " verify steps; finished " << by_status[JobStatus::kFinished]
                    << ", cancelled " << by_status[JobStatus::kCancelled] << ", expired "
                    << by_status[JobStatus::kExpired] << ", failed "
                    << by_status[JobStatus::kFailed] << "; prompt tokens reused " << reused_tokens
                    << "/" << prompt_tokens);
    CHECK(by_status[JobStatus::kFinished] > static_cast<int>(jobs.size()) / 3);
    for (JobId id : whole_pool_jobs) {
      CHECK(h.results[id].status == JobStatus::kFinished);
    }
    MESSAGE(whole_pool_jobs.size() << " jobs needing the whole pool");
    CHECK(evictions > 0);
    CHECK(pauses > 0);
    CHECK(verifies > 0);
    h.check_no_leaks();
  }
}

TEST_CASE("stop, cancel during a step, failed step and drain each end a job exactly once") {
  Harness h(32, 4);
  for (JobId id = 1; id <= 4; ++id)
    h.sched.submit(id, make_job(seq_tokens(6, static_cast<int>(id)), 20), h.now);
  h.step();
  h.sched.stop(1);  // e.g. the token callback returned false
  StepPlan p = h.sched.schedule(h.now);
  REQUIRE(p.ended.size() == 1);
  CHECK(p.ended[0].result.status == JobStatus::kFinished);
  CHECK(p.ended[0].result.tokens.size() == 1);
  // Job 2 is cancelled while the step is in flight: its tokens are dropped.
  h.sched.cancel(2);
  auto sampled = h.dev.run(p, h.sched, h.pool);
  CommitResult r = h.sched.commit(p, sampled, h.now);
  for (auto& u : r.updates) CHECK(u.id != 2);
  REQUIRE(h.sched.validate().ok());
  p = h.sched.schedule(h.now);
  REQUIRE(p.ended.size() == 1);
  CHECK(p.ended[0].id == 2);
  CHECK(p.ended[0].result.status == JobStatus::kCancelled);
  // The forward of this step fails: its jobs fail, the rest are untouched.
  REQUIRE(p.seqs.size() == 2);
  auto failed = h.sched.fail_step(p, "cpu backend: out of memory", h.now);
  CHECK(failed.size() == 2);
  for (auto& e : failed) CHECK(e.result.error == "cpu backend: out of memory");
  h.sched.submit(5, make_job(seq_tokens(6, 5), 20), h.now);
  h.step();
  auto drained = h.sched.drain(JobStatus::kCancelled, h.now);
  REQUIRE(drained.size() == 1);
  CHECK(drained[0].id == 5);
  CHECK(h.sched.num_jobs() == 0);
  h.check_no_leaks();
}

namespace {
CompletionJob owned_job(std::vector<int32_t> prompt, int max_new, std::string tenant,
                        uint64_t session, std::string doc) {
  CompletionJob j = make_job(std::move(prompt), max_new, Priority::kInteractive, std::move(doc));
  j.tenant = std::move(tenant);
  j.session_id = session;
  j.cache_salt = j.tenant;
  return j;
}

std::map<uint64_t, int> slots_per_session(const StepPlan& p,
                                          const std::map<JobId, uint64_t>& owner) {
  std::map<uint64_t, int> n;
  for (const auto& s : p.seqs) ++n[owner.at(s.id)];
  return n;
}
}  // namespace

TEST_CASE(
    "fairness: a quiet session's keystroke is not queued behind a flooding session's backlog") {
  Harness h(256, 4, SchedulerConfig{.max_batch_tokens = 64, .max_batch_seqs = 4});
  std::map<JobId, uint64_t> owner;
  // Session 1 floods: 12 jobs, all submitted (and so due) before the keystroke.
  for (JobId id = 1; id <= 12; ++id) {
    h.sched.submit(
        id,
        owned_job(seq_tokens(6, static_cast<int>(id)), 30, "t", 1, "flood" + std::to_string(id)),
        h.now);
    owner[id] = 1;
  }
  h.step();
  h.step();
  CompletionJob key = owned_job(seq_tokens(6, 40), 3, "t", 2, "quiet");
  h.sched.submit(100, key, h.now);
  owner[100] = 2;
  StepPlan p = h.step();
  // Without fairness the quiet job would wait for 8 of the flood's jobs to
  // finish; with it the flood keeps its share (2 of 4 slots), not more.
  auto n = slots_per_session(p, owner);
  CHECK(n[2] == 1);
  CHECK(n[1] == 2);
  h.run_all();
  CHECK(h.results[100].tokens == reference(key));
  CHECK(h.results[100].metrics.queue_ms <= 1.0);  // scheduled in the step after it arrived
  h.check_no_leaks();
}

TEST_CASE("fairness: tenants share the batch equally, then the sessions of a tenant") {
  Harness h(512, 4, SchedulerConfig{.max_batch_tokens = 256, .max_batch_seqs = 8});
  std::map<JobId, uint64_t> owner;
  std::map<uint64_t, std::string> tenant_of;
  JobId id = 1;
  // Tenant A: three sessions with 6 jobs each; tenant B: one session with 6.
  for (uint64_t s : {1, 2, 3, 4}) {
    std::string tenant = s == 4 ? "B" : "A";
    tenant_of[s] = tenant;
    for (int k = 0; k < 6; ++k, ++id) {
      h.sched.submit(
          id,
          owned_job(seq_tokens(5, static_cast<int>(id)), 8, tenant, s, "d" + std::to_string(id)),
          h.now);
      owner[id] = s;
    }
  }
  StepPlan p = h.step();
  auto n = slots_per_session(p, owner);
  CHECK(p.seqs.size() == 8);
  CHECK(n[4] == 4);                // tenant B: half the batch
  CHECK(n[1] + n[2] + n[3] == 4);  // tenant A: the other half, spread over its sessions
  for (uint64_t s : {1, 2, 3}) CHECK(n[s] >= 1);
  h.run_all();
  for (const auto& [jid, r] : h.results) CHECK(r.status == JobStatus::kFinished);
  h.check_no_leaks();
}

TEST_CASE("fairness: a long prefill takes its share of the step's tokens, not all of them") {
  Harness h(512, 4, SchedulerConfig{.max_batch_tokens = 64});
  CompletionJob big = owned_job(seq_tokens(400, 1), 4, "t", 1, "big");
  h.sched.submit(1, big, h.now);
  StepPlan first = h.step();
  REQUIRE(first.seqs.size() == 1);
  CHECK(first.seqs[0].tokens.size() == 64);  // alone: the whole budget
  CompletionJob small = owned_job(seq_tokens(20, 2), 4, "t", 2, "small");
  h.sched.submit(2, small, h.now);
  StepPlan p = h.step();
  REQUIRE(p.seqs.size() == 2);
  for (const auto& s : p.seqs) {
    CAPTURE(s.id);
    CHECK(s.tokens.size() ==
          (s.id == 1 ? 32u : 20u));  // 64 tokens / 2 sessions; the small job fits
  }
  h.run_all();
  CHECK(h.results[1].tokens == reference(big));
  CHECK(h.results[2].tokens == reference(small));
  h.check_no_leaks();
}

TEST_CASE("fairness: priority decides within each session's share") {
  Harness h(256, 4, SchedulerConfig{.max_batch_seqs = 2});
  h.sched.submit(1, owned_job(seq_tokens(6, 1), 10, "t", 1, "a"), h.now);
  CompletionJob prefetch = owned_job(seq_tokens(6, 3), 10, "t", 2, "c");
  prefetch.priority = Priority::kPrefetch;
  h.sched.submit(2, prefetch, h.now);  // session 2's prefetch arrives first
  h.sched.submit(3, owned_job(seq_tokens(6, 2), 10, "t", 2, "b"), h.now);
  StepPlan p = h.step();
  std::set<JobId> ids;
  for (const auto& s : p.seqs) ids.insert(s.id);
  CHECK(ids == std::set<JobId>{1, 3});  // session 2's slot goes to its interactive job
  h.run_all();
  h.check_no_leaks();
}

TEST_CASE("fairness: a lone session still gets the whole step") {
  Harness h(256, 4, SchedulerConfig{.max_batch_tokens = 64, .max_batch_seqs = 4});
  for (JobId id = 1; id <= 6; ++id) {
    h.sched.submit(
        id, owned_job(seq_tokens(40, static_cast<int>(id)), 4, "t", 1, "d" + std::to_string(id)),
        h.now);
  }
  StepPlan p = h.step();
  CHECK(p.seqs.size() == 2);  // 40 + 24 tokens: the budget, not a share
  CHECK(p.num_tokens == 64);
  h.run_all();
  h.check_no_leaks();
}

// A flood of 6 long prompts (session 1) and one short keystroke job (session
// 2) that ends after a step or two; returns once session 2 has no job.
static void flood_and_keystroke(Harness& h) {
  for (JobId id = 1; id <= 6; ++id)
    h.sched.submit(id, owned_job(seq_tokens(200, static_cast<int>(id)), 4, "t", 1, "f" + std::to_string(id)), h.now);
  h.sched.submit(100, owned_job(seq_tokens(6, 100), 1, "t", 2, "k"), h.now);
  while (!h.results.contains(100)) h.step();
}

TEST_CASE("fairness: between a typist's keystrokes a flooding session keeps its share (share window)") {
  Harness h(1024, 4, SchedulerConfig{.max_batch_tokens = 64, .max_batch_seqs = 4});
  flood_and_keystroke(h);
  // The typist has no job now, but typed within the window: the backlog
  // still gets half the step, so the next keystroke waits for a small step.
  CHECK(h.step().num_tokens == 32);
  CHECK(h.step().num_tokens == 32);
  h.now += std::chrono::milliseconds(1500);  // the typist went quiet
  CHECK(h.step().num_tokens == 64);
  // A new keystroke job runs at once, beside the flood's share.
  h.sched.submit(101, owned_job(seq_tokens(6, 101), 1, "t", 2, "k"), h.now);
  StepPlan p = h.step();
  bool keystroke = false;
  for (const auto& s : p.seqs) keystroke = keystroke || s.id == 101;
  CHECK(keystroke);
  h.run_all();
  for (const auto& [id, r] : h.results) CHECK(r.status == JobStatus::kFinished);
  h.check_no_leaks();
}

TEST_CASE("fairness: the share window holds back backlogs only; 0 turns it off") {
  SUBCASE("a session with one long job takes the whole step while the typist is between keystrokes") {
    Harness h(1024, 4, SchedulerConfig{.max_batch_tokens = 64, .max_batch_seqs = 4});
    h.sched.submit(100, owned_job(seq_tokens(6, 100), 1, "t", 2, "k"), h.now);
    while (!h.results.contains(100)) h.step();
    h.sched.submit(1, owned_job(seq_tokens(300, 1), 4, "t", 3, "long"), h.now);
    CHECK(h.step().num_tokens == 64);
    h.run_all();
    h.check_no_leaks();
  }
  SUBCASE("share_window_ms = 0: the flood gets the whole step as soon as the typist has no job") {
    Harness h(1024, 4, SchedulerConfig{.max_batch_tokens = 64, .max_batch_seqs = 4, .share_window_ms = 0});
    flood_and_keystroke(h);
    CHECK(h.step().num_tokens == 64);
    h.run_all();
    h.check_no_leaks();
  }
}
