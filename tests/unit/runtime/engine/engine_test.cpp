// Engine invariants with a real (random-weight) Qwen2 model written by the
// test itself (engine_harness.h): batching, prefix reuse and speculation
// never change greedy tokens; every job ends exactly once; no KV block leaks.
// On the CPU backend by default; GHOSTD_TEST_DEVICE=cuda runs the same cases
// on the GPU (ctest unit.runtime.engine.engine_cuda, label gpu; exit 77
// without a device), GHOSTD_TEST_STEP_GRAPHS=1 through captured steps.
#include "runtime/engine/engine.h"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/runtime/engine/engine_harness.h"

namespace ghostd::runtime {
namespace {

using namespace engine_testing;
using namespace std::chrono_literals;

TEST_CASE("engine: batched decoding equals decoding each job alone") {
  TestModel tm;
  if (!tm.ready) return;
  std::mt19937 rng(7);
  std::vector<CompletionJob> jobs;
  for (int i = 0; i < 6; ++i)
    jobs.push_back(greedy_job(random_prompt(rng, 5 + 13 * i), 12, "d" + std::to_string(i)));
  // Seeded sampling at temperature 1 is a finer probe of the logits than argmax.
  for (int i = 0; i < 3; ++i) {
    jobs.push_back(greedy_job(random_prompt(rng, 9 + 7 * i), 12, "s" + std::to_string(i)));
    jobs.back().sampling.temperature = 1.0f;
    jobs.back().sampling.seed = 100 + static_cast<uint64_t>(i);
  }

  std::vector<std::vector<int32_t>> alone;
  {
    auto engine = make_engine(tm, small_options());
    for (const auto& j : jobs) {
      Outcome o = run_alone(*engine, j);
      REQUIRE(o.result.status == JobStatus::kFinished);
      CHECK(o.result.metrics.max_batch_size == 1);
      alone.push_back(o.result.tokens);
    }
    check_clean_shutdown(*engine);
  }
  // The model's outputs depend on the prompt (else this test would prove little).
  CHECK(alone[0] != alone[1]);
  CHECK(alone[2] != alone[3]);
  std::string shown;
  for (int32_t t : alone[0]) shown += std::to_string(t) + " ";
  MESSAGE("greedy tokens of job 0: ", shown);
  auto engine = make_engine(tm, small_options());
  Collector c;
  for (const auto& j : jobs) engine->submit(j, c.callbacks());
  REQUIRE(c.wait_all());
  int max_batch = 0;
  for (size_t i = 0; i < jobs.size(); ++i) {
    const Outcome& o = c.at(i);
    CAPTURE(i);
    CHECK(o.done_calls == 1);
    REQUIRE(o.result.status == JobStatus::kFinished);
    CHECK(o.result.tokens.size() == 12);
    CHECK(o.result.tokens == alone[i]);
    CHECK(o.streamed == o.result.tokens);
    const JobMetrics& m = o.result.metrics;
    CHECK(m.prompt_tokens == static_cast<int>(jobs[i].prompt.size()));
    CHECK(m.generated_tokens == 12);
    CHECK(m.queue_ms >= 0);
    CHECK(m.ttft_ms >= m.queue_ms);
    CHECK(m.total_ms >= m.ttft_ms);
    max_batch = std::max(max_batch, m.max_batch_size);
  }
  CHECK(max_batch > 1);
  if (const char* g = std::getenv("GHOSTD_TEST_STEP_GRAPHS"); g && std::atoi(g) > 0) {
    // The decode steps went through captured graphs (else this run proves nothing more).
    CHECK(engine->stats().replayed_steps > 0);
    CHECK(engine->stats().captured_steps > 1);
  }
  // Idle engine sleeps: no steps without work (after the last step settles).
  std::this_thread::sleep_for(50ms);
  const uint64_t steps = engine->stats().steps;
  std::this_thread::sleep_for(30ms);
  CHECK(engine->stats().steps == steps);
  check_clean_shutdown(*engine);
}

TEST_CASE("engine: a reused prefix gives the same tokens as a fresh prefill") {
  TestModel tm;
  if (!tm.ready) return;
  std::mt19937 rng(11);
  const std::vector<int32_t> shared = random_prompt(rng, 70);  // 4 full blocks + a partial one
  auto with_tail = [&](int n) {
    std::vector<int32_t> p = shared;
    auto t = random_prompt(rng, n);
    p.insert(p.end(), t.begin(), t.end());
    return p;
  };
  const CompletionJob first = greedy_job(with_tail(5), 8);
  const CompletionJob second = greedy_job(with_tail(6), 10);

  // Seeded sampling probes the logits more finely than argmax.
  CompletionJob sampled = second;
  sampled.sampling.temperature = 1.0f;
  sampled.sampling.seed = 9;
  // References from a cold engine (one engine drives a model at a time).
  auto fresh = make_engine(tm, small_options());
  Outcome expected = run_alone(*fresh, second);
  CHECK(expected.result.metrics.reused_tokens == 0);
  check_clean_shutdown(*fresh);
  auto fresh2 = make_engine(tm, small_options());
  Outcome cold = run_alone(*fresh2, sampled);
  CHECK(cold.result.metrics.reused_tokens == 0);
  check_clean_shutdown(*fresh2);

  auto engine = make_engine(tm, small_options());
  Outcome a = run_alone(*engine, first);
  REQUIRE(a.result.status == JobStatus::kFinished);
  Outcome b = run_alone(*engine, second);
  REQUIRE(b.result.status == JobStatus::kFinished);
  CHECK(b.result.metrics.reused_tokens >= 64);
  CHECK(b.result.metrics.reused_tokens <= 70);
  CHECK(b.result.tokens == expected.result.tokens);
  // The same request again reuses all but its last prompt token.
  Outcome c = run_alone(*engine, second);
  CHECK(c.result.metrics.reused_tokens == static_cast<int>(second.prompt.size()) - 1);
  CHECK(c.result.tokens == expected.result.tokens);
  CHECK(engine->stats().cached_blocks > 0);

  Outcome warm = run_alone(*engine, sampled);
  CHECK(warm.result.metrics.reused_tokens == static_cast<int>(second.prompt.size()) - 1);
  CHECK(warm.result.tokens == cold.result.tokens);
  check_clean_shutdown(*engine);
}

TEST_CASE("engine: prompt-lookup speculation gives the tokens of plain greedy decoding") {
  TestModel tm;
  if (!tm.ready) return;
  std::mt19937 rng(5);
  const std::vector<int32_t> unit = random_prompt(rng, 12);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 5; ++i) prompt.insert(prompt.end(), unit.begin(), unit.end());
  const CompletionJob job = greedy_job(prompt, 40);

  auto plain = make_engine(tm, small_options());
  Outcome off = run_alone(*plain, job);
  REQUIRE(off.result.status == JobStatus::kFinished);
  CHECK(off.result.metrics.draft_proposed == 0);
  check_clean_shutdown(*plain);

  EngineOptions o = small_options();
  o.speculate = true;
  o.speculation.adaptive = false;  // drafts whatever they cost: the test needs them
  auto spec = make_engine(tm, o);
  Outcome on = run_alone(*spec, job);
  REQUIRE(on.result.status == JobStatus::kFinished);
  CHECK(on.result.tokens == off.result.tokens);
  CHECK(on.streamed == off.result.tokens);
  CHECK(on.result.metrics.draft_proposed > 0);
  CHECK(on.result.metrics.draft_accepted > 0);
  CHECK(on.result.metrics.draft_accepted <= on.result.metrics.draft_proposed);
  CHECK(spec->stats().steps < plain->stats().steps);

  // Several speculating jobs batched together still match plain decoding.
  Collector c;
  for (int i = 0; i < 3; ++i) spec->submit(job, c.callbacks());
  REQUIRE(c.wait_all());
  for (size_t i = 0; i < 3; ++i) CHECK(c.at(i).result.tokens == off.result.tokens);

  // Sampled jobs draft too (verified by rejection sampling); a low
  // temperature keeps the output on the repeated pattern lookup drafts from.
  CompletionJob sampled = job;
  sampled.sampling.temperature = 0.02f;
  sampled.sampling.seed = 42;
  Outcome s1 = run_alone(*spec, sampled);
  CHECK(s1.result.status == JobStatus::kFinished);
  CHECK(s1.result.metrics.draft_proposed > 0);
  CHECK(s1.streamed == s1.result.tokens);
  // Without speculation a seed reproduces a sampled completion (with it, the
  // drafts follow measured step times, so only the distribution is fixed).
  sampled.use_draft = false;
  Outcome s2 = run_alone(*spec, sampled);
  Outcome s3 = run_alone(*spec, sampled);
  CHECK(s2.result.metrics.draft_proposed == 0);
  CHECK(s2.result.tokens == s3.result.tokens);
  check_clean_shutdown(*spec);
}

EngineStats stress(TestModel& tm, uint32_t seed, std::map<JobStatus, int>& totals, int& compared,
                   Model* draft = nullptr) {
  CAPTURE(seed);
  EngineOptions o = small_options();
  o.speculate = true;
  // Prompt-lookup drafts whatever they cost, but short: long drafts (or the
  // suffix index's, which match more often) finish jobs in a few steps and
  // leave the pool and batch without pressure in slow (sanitizer) builds.
  o.speculation.adaptive = false;
  o.speculation.max_draft = 4;
  o.speculation.suffix = false;
  if (draft != nullptr) {
    // Both models' KV in the blocks; long drafts whatever they cost.
    o.draft_model = draft;
    o.speculation.adaptive = false;
  }
  o.scheduler.max_batch_seqs = 6;
  auto engine = make_engine(tm, o, /*num_blocks=*/16);  // 256 token slots: forces evictions
  Collector c;
  std::mt19937 rng(seed);
  std::vector<std::vector<int32_t>> bases;
  for (int d = 0; d < 3; ++d) bases.push_back(random_prompt(rng, 40));
  std::vector<JobId> ids;
  std::vector<CompletionJob> submitted;
  for (int i = 0; i < 60; ++i) {
    const int doc = static_cast<int>(rng() % 3);
    std::vector<int32_t> p = bases[static_cast<size_t>(doc)];
    p.resize(10 + rng() % 30);
    auto tail = random_prompt(rng, 1 + static_cast<int>(rng() % 20));
    p.insert(p.end(), tail.begin(), tail.end());
    if (rng() % 4 == 0) p.insert(p.end(), p.begin(), p.begin() + 8);  // something to draft from
    CompletionJob j = greedy_job(p, 1 + static_cast<int>(rng() % 40), "doc" + std::to_string(doc));
    j.priority = static_cast<Priority>(rng() % 3);
    if (rng() % 5 == 0) j.deadline = Clock::now() + std::chrono::milliseconds(rng() % 20);
    if (rng() % 6 == 0) j.sampling.temperature = 0.7f;
    if (i == 17) j.stop.max_new_tokens = 1000;  // can never fit: fails
    const int stop_after = rng() % 7 == 0 ? 2 : -1;
    submitted.push_back(j);
    ids.push_back(engine->submit(std::move(j), c.callbacks(stop_after)));
    if (rng() % 4 == 0) engine->cancel(ids[rng() % ids.size()]);
    if (rng() % 8 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 3));
  }
  engine->cancel(987654);  // unknown: ignored
  // Shut down with work in flight half of the time.
  if (rng() % 2 == 0) REQUIRE(c.wait_all());
  check_clean_shutdown(*engine);
  REQUIRE(c.wait_all(0ms));
  std::map<JobStatus, int> by_status;
  for (size_t i = 0; i < c.size(); ++i) {
    const Outcome& out = c.at(i);
    CHECK(out.done_calls == 1);
    ++by_status[out.result.status];
    CHECK(out.streamed == out.result.tokens);
    if (out.result.status == JobStatus::kFailed)
      CHECK(out.result.error.find("KV pool") != std::string::npos);
  }
  CHECK(by_status[JobStatus::kFailed] == 1);  // the one that can never fit
  for (const auto& [status, n] : by_status) totals[status] += n;
  // Token values: whatever a greedy job got under batching, drafts, pauses,
  // evictions (recomputed KV) and prefix sharing is a prefix of what it gets
  // alone on an idle engine (it may have stopped early: cancel, deadline).
  auto ref = make_engine(tm, small_options());
  for (size_t i = 0; i < c.size(); ++i) {
    const Outcome& out = c.at(i);
    if (out.result.tokens.empty() || submitted[i].sampling.temperature > 0) continue;
    CompletionJob alone_job = submitted[i];
    alone_job.deadline = Clock::time_point::max();
    alone_job.priority = Priority::kInteractive;
    const Outcome alone = run_alone(*ref, alone_job);
    CAPTURE(i);
    REQUIRE(alone.result.tokens.size() >= out.result.tokens.size());
    CHECK(std::equal(out.result.tokens.begin(), out.result.tokens.end(), alone.result.tokens.begin()));
    ++compared;
  }
  check_clean_shutdown(*ref);
  const EngineStats st = engine->stats();
  CHECK(st.active_jobs == 0);
  return st;
}

TEST_CASE("engine: randomized submits, cancels, deadlines and priorities leak no block") {
  TestModel tm;
  if (!tm.ready) return;
  uint64_t preempted = 0;
  std::map<JobStatus, int> totals;
  int compared = 0;  // greedy jobs whose tokens were checked against a run alone
  for (uint32_t seed = 1; seed <= 6; ++seed) {
    const EngineStats st = stress(tm, seed, totals, compared);
    preempted += st.evicted_jobs + st.paused_jobs;
  }
  MESSAGE("jobs paused or evicted: " << preempted);
  CHECK(preempted > 0);  // the pool and the batch were under pressure
  CHECK(compared > 30);
  CHECK(totals[JobStatus::kFinished] > 0);
  CHECK(totals[JobStatus::kCancelled] > 0);
}

TEST_CASE("engine: the randomized run with a draft model leaks no block and keeps greedy tokens") {
  TestModel tm;
  if (!tm.ready) return;
  std::map<JobStatus, int> totals;
  int compared = 0;
  uint64_t rounds = 0;
  for (uint32_t seed = 1; seed <= 3; ++seed) {
    const EngineStats st = stress(tm, seed, totals, compared, &tm.draft({.seed = 31, .layers = 1}));
    rounds += st.draft_rounds;
    CHECK(st.draft_error == "");
  }
  CHECK(rounds > 0);
  CHECK(compared > 15);
}

TEST_CASE("engine: memory pressure queues jobs that fit and fails one that never can") {
  TestModel tm;
  if (!tm.ready) return;
  std::mt19937 rng(9);
  std::vector<CompletionJob> jobs;
  for (int i = 0; i < 5; ++i)
    jobs.push_back(greedy_job(random_prompt(rng, 40 + i), 20, "m" + std::to_string(i)));
  auto big = make_engine(tm, small_options());
  std::vector<std::vector<int32_t>> expected;
  for (const auto& j : jobs) expected.push_back(run_alone(*big, j).result.tokens);
  check_clean_shutdown(*big);

  auto engine = make_engine(tm, small_options(), /*num_blocks=*/8);  // one job's worth at a time
  Collector c;
  for (const auto& j : jobs) engine->submit(j, c.callbacks());
  engine->submit(greedy_job(random_prompt(rng, 150), 10), c.callbacks());
  REQUIRE(c.wait_all());
  for (size_t i = 0; i < jobs.size(); ++i) {
    CAPTURE(i);
    CHECK(c.at(i).result.status == JobStatus::kFinished);
    CHECK(c.at(i).result.tokens == expected[i]);
  }
  const JobResult& huge = c.at(jobs.size()).result;
  CHECK(huge.status == JobStatus::kFailed);
  CHECK(huge.error.find("KV pool holds only 8") != std::string::npos);
  check_clean_shutdown(*engine);
}

TEST_CASE("engine: exactly one on_done per job, also at shutdown and after it") {
  TestModel tm;
  if (!tm.ready) return;
  auto engine = make_engine(tm, small_options());
  Collector c;
  std::mt19937 rng(1);
  const JobId cancelled = engine->submit(greedy_job(random_prompt(rng, 30), 200), c.callbacks());
  engine->cancel(cancelled);
  CompletionJob expired = greedy_job(random_prompt(rng, 30), 200);
  expired.deadline = Clock::now() - 1ms;
  engine->submit(expired, c.callbacks());
  REQUIRE(c.wait_all());  // both end in the first step
  for (int i = 0; i < 8; ++i)
    engine->submit(greedy_job(random_prompt(rng, 30), 200), c.callbacks());
  std::this_thread::sleep_for(2ms);
  check_clean_shutdown(*engine);  // the 8 are queued or running
  engine->submit(greedy_job(random_prompt(rng, 30), 5), c.callbacks());  // after shutdown
  REQUIRE(c.wait_all(0ms));
  REQUIRE(c.size() == 11);
  for (size_t i = 0; i < c.size(); ++i) {
    CAPTURE(i);
    CHECK(c.at(i).done_calls == 1);
    CHECK(c.at(i).result.status != JobStatus::kFailed);
  }
  CHECK(c.at(0).result.status == JobStatus::kCancelled);
  CHECK(c.at(1).result.status == JobStatus::kExpired);
  CHECK(c.at(10).result.status == JobStatus::kCancelled);
  CHECK(engine->shutdown().ok());  // idempotent
}

TEST_CASE("engine: callbacks may submit, but not shut down") {
  TestModel tm;
  if (!tm.ready) return;
  auto engine = make_engine(tm, small_options());
  std::mt19937 rng(2);
  Collector c;
  std::mutex mu;
  std::optional<Status> from_callback;
  JobCallbacks cb = c.callbacks();
  auto inner = cb.on_done;
  cb.on_done = [&, inner](JobResult r) {
    {
      std::lock_guard lock(mu);
      from_callback = engine->shutdown();
    }
    engine->submit(greedy_job(random_prompt(rng, 10), 3), c.callbacks());  // re-entrant submit
    inner(std::move(r));
  };
  engine->submit(greedy_job(random_prompt(rng, 10), 3), cb);
  REQUIRE(c.wait_all());
  REQUIRE(c.size() == 2);
  CHECK(c.at(1).result.status == JobStatus::kFinished);
  std::lock_guard lock(mu);
  REQUIRE(from_callback.has_value());
  CHECK_FALSE(from_callback->ok());
  check_clean_shutdown(*engine);
}

TEST_CASE("engine: a failing forward fails only its job") {
  TestModel tm;
  if (!tm.ready) return;
  std::mt19937 rng(21);
  std::vector<CompletionJob> good;
  for (int i = 0; i < 3; ++i)
    good.push_back(greedy_job(random_prompt(rng, 20 + i), 10, "g" + std::to_string(i)));
  auto engine = make_engine(tm, small_options());
  std::vector<std::vector<int32_t>> expected;
  for (const auto& j : good) expected.push_back(run_alone(*engine, j).result.tokens);

  CompletionJob bad = greedy_job(random_prompt(rng, 20), 10, "bad");
  bad.prompt[7] = kVocab + 5;
  Collector c;
  engine->submit(good[0], c.callbacks());
  engine->submit(bad, c.callbacks());
  engine->submit(good[1], c.callbacks());
  engine->submit(good[2], c.callbacks());
  REQUIRE(c.wait_all());
  CHECK(c.at(0).result.tokens == expected[0]);
  CHECK(c.at(2).result.tokens == expected[1]);
  CHECK(c.at(3).result.tokens == expected[2]);
  CHECK(c.at(1).result.status == JobStatus::kFailed);
  CHECK(c.at(1).result.error.find("outside the vocabulary") != std::string::npos);
  CHECK(engine->stats().failed_forwards >= 1);
  // Still serving.
  Outcome after = run_alone(*engine, good[0]);
  CHECK(after.result.status == JobStatus::kFinished);
  CHECK(after.result.tokens == expected[0]);
  check_clean_shutdown(*engine);
}

TEST_CASE("engine: create rejects a budget that holds no block") {
  TestModel tm;
  if (!tm.ready) return;
  EngineOptions o;
  o.kv_memory_bytes = tm.block_bytes() - 1;
  auto e = Engine::create(tm.model(), o);
  REQUIRE_FALSE(e.ok());
  CHECK(e.error().message.find("holds no KV block") != std::string::npos);
}

TEST_CASE("engine: one engine drives a model at a time") {
  TestModel tm;
  if (!tm.ready) return;
  auto first = make_engine(tm, small_options());
  auto second = Engine::create(tm.model(), small_options());
  REQUIRE_FALSE(second.ok());
  CHECK(second.error().message.find("driven by another engine") != std::string::npos);
  // The refused create left the first engine's workspaces alone.
  std::mt19937 rng(5);
  Outcome a = run_alone(*first, greedy_job(random_prompt(rng, 20), 6));
  CHECK(a.result.status == JobStatus::kFinished);
  check_clean_shutdown(*first);
  // A failed create detaches too: a budget that holds no block, then a good one.
  EngineOptions tiny = small_options();
  tiny.kv_memory_bytes = 1;
  CHECK_FALSE(Engine::create(tm.model(), tiny).ok());
  auto third = make_engine(tm, small_options());
  Outcome b = run_alone(*third, greedy_job(random_prompt(rng, 20), 6));
  CHECK(b.result.status == JobStatus::kFinished);
  check_clean_shutdown(*third);
}

TEST_CASE("engine: token healing constrains the first tokens to the required bytes") {
  TestModel tm;
  if (!tm.ready) return;
  // A synthetic byte table: token i is two bytes, 'a' + i / 26 then 'a' + i % 26,
  // so prefixes of one token and continuations across tokens both occur.
  EngineOptions o = small_options();
  o.speculate = true;
  o.token_bytes.resize(kVocab);
  for (int i = 0; i < kVocab; ++i)
    o.token_bytes[i] = std::string{static_cast<char>('a' + i / 26 % 26), static_cast<char>('a' + i % 26)};
  auto engine = make_engine(tm, o);
  std::mt19937 rng(11);
  auto prompt = random_prompt(rng, 40);
  for (const std::string& need : {std::string("c"), std::string("bq"), std::string("dzf")}) {
    CompletionJob j = greedy_job(prompt, 6);
    j.required_prefix = need;
    Outcome out = run_alone(*engine, j);
    REQUIRE(out.result.status == JobStatus::kFinished);
    std::string text;
    for (int32_t t : out.result.tokens) text += o.token_bytes[t];
    INFO("required " << need << ", got " << text);
    CHECK(text.compare(0, need.size(), need) == 0);
    // Greedy under the constraint equals the argmax over allowed tokens, so
    // the same job gives the same tokens again, alone or batched.
    CHECK(run_alone(*engine, j).result.tokens == out.result.tokens);
  }
  check_clean_shutdown(*engine);

  // Without a byte table such a job fails with a clear error; others still run.
  auto plain = make_engine(tm, small_options());
  CompletionJob j = greedy_job(prompt, 4);
  j.required_prefix = "x";
  Outcome bad = run_alone(*plain, j);
  CHECK(bad.result.status == JobStatus::kFailed);
  CHECK(bad.result.error.find("token_bytes") != std::string::npos);
  CHECK(run_alone(*plain, greedy_job(prompt, 4)).result.status == JobStatus::kFinished);
  check_clean_shutdown(*plain);
}

}  // namespace
}  // namespace ghostd::runtime
