#include "runtime/speculative/speculator.h"

#include <doctest/doctest.h>

#include <vector>

namespace ghostd::runtime {
namespace {

CompletionJob job_with_prompt(std::vector<int32_t> prompt) {
  CompletionJob j;
  j.prompt = std::move(prompt);
  return j;
}

// A step time model: base + per_token * tokens, observed at several sizes.
void feed(Speculator& s, double base, double per_token) {
  for (int rep = 0; rep < 40; ++rep)
    for (int x : {1, 2, 5, 9, 48}) s.observe_step(x, base + per_token * x);
}

// Prompt that prompt lookup always continues: a repeated run 1..12.
std::vector<int32_t> repeated() {
  std::vector<int32_t> p;
  for (int r = 0; r < 3; ++r)
    for (int t = 1; t <= 12; ++t) p.push_back(t);
  p.push_back(1);
  p.push_back(2);
  return p;
}

}  // namespace

TEST_CASE("step cost model: recovers base and per-token time from measured steps") {
  StepCostModel m(1e-3, 1e-4);
  for (int rep = 0; rep < 100; ++rep)
    for (int x : {1, 3, 17, 64}) m.observe(x, 2e-3 + 5e-5 * x);
  CHECK(m.base() == doctest::Approx(2e-3).epsilon(0.01));
  CHECK(m.per_token() == doctest::Approx(5e-5).epsilon(0.01));
  // Steps of one size only: the slope stays, the intercept follows.
  for (int rep = 0; rep < 200; ++rep) m.observe(4, 3e-3 + 5e-5 * 4);
  CHECK(m.per_token() == doctest::Approx(5e-5).epsilon(0.05));
  CHECK(m.base() == doctest::Approx(3e-3).epsilon(0.05));
  m.observe(0, 1.0);  // ignored
  m.observe(3, -1.0);
  CHECK(m.base() == doctest::Approx(3e-3).epsilon(0.05));
}

TEST_CASE("speculator: a launch-bound step drafts at full length, a compute-bound one stops") {
  SpeculationOptions o;
  o.max_draft = 8;
  const auto prompt = repeated();
  SUBCASE("launch-bound (a GPU at small batch): full length") {
    Speculator s(o, false);
    feed(s, 5e-3, 1e-5);
    s.add_job(1, job_with_prompt(prompt));
    s.begin_round(1, 1);
    DraftPlan d = s.propose(1, prompt, 0);
    CHECK(d.source == DraftSource::kLookup);
    CHECK(d.length == 8);
    CHECK(d.tokens == std::vector<int32_t>{3, 4, 5, 6, 7, 8, 9, 10});
    // At 64 jobs the same step still pays for drafts: per-token time is tiny.
    s.begin_round(64, 64);
    CHECK(s.propose(1, prompt, 0).length > 0);
  }
  SUBCASE("compute-bound (a small CPU): none at batch 8, short at batch 1 when drafts pass") {
    Speculator s(o, false);
    feed(s, 1e-4, 3e-4);
    s.add_job(1, job_with_prompt(prompt));
    s.begin_round(8, 8);
    CHECK(s.propose(1, prompt, 0).length == 0);
    s.begin_round(1, 1);
    CHECK(s.propose(1, prompt, 0).length == 0);  // 0.5 acceptance cannot pay 0.75 of a step
    for (int i = 0; i < 20; ++i) s.record(1, DraftSource::kLookup, 4, 4);
    const DraftPlan d = s.propose(1, prompt, 0);
    CHECK(d.length >= 1);  // every draft passed: even a 2-core CPU gains from them
  }
}

TEST_CASE("speculator: acceptance follows what verify reports, per job and engine-wide") {
  SpeculationOptions o;
  Speculator s(o, false);
  feed(s, 5e-3, 1e-5);
  const auto prompt = repeated();
  s.add_job(1, job_with_prompt(prompt));
  const double start = s.engine_acceptance(DraftSource::kLookup);
  for (int i = 0; i < 30; ++i) s.record(1, DraftSource::kLookup, 4, 0);
  CHECK(s.engine_acceptance(DraftSource::kLookup) < start);
  s.begin_round(1, 1);
  // Nothing is accepted any more: no step pays for these drafts.
  CHECK(s.propose(1, prompt, 0).length < 3);
  JobMetrics m;
  s.end_job(1, {}, m);
  CHECK(m.drafts[static_cast<int>(DraftSource::kLookup)].proposed == 120);
  CHECK(m.drafts[static_cast<int>(DraftSource::kLookup)].accepted == 0);
  CHECK(m.drafts[static_cast<int>(DraftSource::kLookup)].verifies == 30);
  // A new job starts from the engine-wide average, which fell.
  s.add_job(2, job_with_prompt(prompt));
  s.begin_round(1, 1);
  CHECK(s.propose(2, prompt, 0).length < 8);
}

TEST_CASE("speculator: typed-through hints while the output follows them; the draft model when nothing matches") {
  SpeculationOptions o;
  o.max_draft = 4;
  Speculator s(o, /*has_draft_model=*/true);
  feed(s, 5e-3, 1e-5);
  std::vector<int32_t> prompt{50, 51, 52};
  CompletionJob j = job_with_prompt(prompt);
  j.draft_hint = {7, 8, 9, 10, 11, 12};
  s.add_job(1, j);
  s.begin_round(1, 1);
  std::vector<int32_t> tokens = prompt;
  tokens.push_back(7);  // the first generated token followed the hint
  DraftPlan d = s.propose(1, tokens, 1);
  CHECK(d.source == DraftSource::kTyped);
  CHECK(d.tokens == std::vector<int32_t>{8, 9, 10, 11});
  tokens.push_back(99);  // diverged: the hint is dropped for good
  d = s.propose(1, tokens, 2);
  CHECK(d.source == DraftSource::kModel);  // no n-gram match in this context
  CHECK(d.tokens.empty());
  CHECK(d.length == 4);
  tokens.back() = 8;
  CHECK(s.propose(1, tokens, 2).source == DraftSource::kModel);
}

}  // namespace ghostd::runtime

namespace ghostd::runtime {

// The prompt continues "1 2" two ways: "3 4 5" earlier, "7 8 9" most recently.
TEST_CASE("speculator: prompt lookup offers both continuations as a tree when the branch pays") {
  const std::vector<int32_t> prompt{20, 1, 2, 3, 4, 5, 21, 22, 1, 2, 7, 8, 9, 23, 1, 2};
  SpeculationOptions o;
  o.max_draft = 6;
  o.suffix = false;
  SUBCASE("launch-bound: the second guess rides along") {
    Speculator s(o, false);
    feed(s, 5e-3, 1e-5);
    s.add_job(1, job_with_prompt(prompt));
    s.begin_round(1, 1);
    const DraftPlan d = s.propose(1, prompt, 0);
    REQUIRE(d.source == DraftSource::kLookup);
    REQUIRE(!d.parents.empty());
    DraftTree t;
    t.tokens = d.tokens;
    t.parents = d.parents;
    CHECK(t.check() == "");
    CHECK(d.length == static_cast<int>(d.tokens.size()));
    CHECK(d.length <= 6);
    CHECK(d.tokens[0] == 7);  // the most recent continuation is the first guess
    int roots = 0;
    for (size_t i = 0; i < d.parents.size(); ++i)
      if (d.parents[i] == -1) {
        ++roots;
        CHECK((d.tokens[i] == 7 || d.tokens[i] == 3));
      }
    CHECK(roots == 2);
  }
  SUBCASE("trees off: the chain") {
    o.trees = false;
    Speculator s(o, false);
    feed(s, 5e-3, 1e-5);
    s.add_job(1, job_with_prompt(prompt));
    s.begin_round(1, 1);
    const DraftPlan d = s.propose(1, prompt, 0);
    CHECK(d.parents.empty());
    CHECK(d.tokens.front() == 7);
  }
  SUBCASE("a verify row costs most of a step: no branch (nor much of the chain)") {
    Speculator s(o, false);
    feed(s, 1e-4, 3e-4);
    s.add_job(1, job_with_prompt(prompt));
    for (int i = 0; i < 20; ++i) s.record(1, DraftSource::kLookup, 4, 4);  // the first guess is always right
    s.begin_round(1, 1);
    const DraftPlan d = s.propose(1, prompt, 0);
    CHECK(d.parents.empty());
  }
}

TEST_CASE("speculator: first guesses and second guesses are tracked apart") {
  SpeculationOptions o;
  Speculator s(o, false);
  s.add_job(1, job_with_prompt({1, 2, 3}));
  const double alpha = s.engine_acceptance(DraftSource::kSuffix);
  const double beta = s.engine_second_guess(DraftSource::kSuffix);
  // Fed tree: root -> a (1), b (2); a -> c (3); b -> d (4). The target took
  // b then d: the first guess missed, a second guess hit, then d (a first
  // guess) hit.
  const std::vector<int32_t> parents{-1, 0, 0, 1, 2};
  const GuessOutcome g = tree_outcome(parents, std::vector<int32_t>{2, 4});
  CHECK(g.first_hits == 1);
  CHECK(g.first_misses == 1);
  CHECK(g.alt_trials == 1);
  CHECK(g.alt_hits == 1);
  // Took a, then c's row rejected: one hit, then a leaf-free miss without alternatives.
  const GuessOutcome h = tree_outcome(parents, std::vector<int32_t>{1});
  CHECK(h.first_hits == 1);
  CHECK(h.first_misses == 1);
  CHECK(h.alt_trials == 0);
  for (int i = 0; i < 10; ++i) s.record(1, DraftSource::kSuffix, 4, 2, g);
  CHECK(s.engine_second_guess(DraftSource::kSuffix) > beta);
  // Nothing but wrong second guesses: beta falls, alpha is left alone.
  const double alpha2 = s.engine_acceptance(DraftSource::kSuffix);
  for (int i = 0; i < 20; ++i) s.record(1, DraftSource::kSuffix, 4, 0, GuessOutcome{0, 0, 1, 0});
  CHECK(s.engine_second_guess(DraftSource::kSuffix) < beta);
  CHECK(s.engine_acceptance(DraftSource::kSuffix) == alpha2);
  (void)alpha;
}

}  // namespace ghostd::runtime
