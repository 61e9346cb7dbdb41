// The speculation stage: which draft tokens each running job verifies in its
// next step, from which proposer, and how many. The engine calls it once per
// step (propose after commit, record after verify).
//
// Proposers, one interface (a proposal: tokens and the source that made them):
//  - typed-through: the job's draft_hint (the completion on screen that the
//    user is typing through), while the output follows it;
//  - suffix index: frequency-weighted continuations from the document, other
//    open files and this document's earlier completions (SuffixDecoding);
//  - prompt lookup: the n-gram match over the prompt and output;
//  - draft model: a smaller model with the target's vocabulary; its tokens
//    are made by the engine in the next step (the stage only asks for k).
// A job combines them: the cheap proposers first, the draft model when none
// of them would pay more.
//
// Adaptive policy. Each proposer's per-token acceptance is tracked per job
// (an exponential average, started from the engine-wide average). A draft
// token i (1-based) is expected to be accepted with probability alpha^i. It
// costs the measured per-token time of a step (plus, for the draft model,
// its measured time per round), and the step's other work is worth
// N / t(R) tokens per second (N sampling jobs, t the measured step time for
// R fed tokens). So token i is worth proposing while
//     alpha^i / cost_i > N / t(R).
// The costs come from a least-squares fit of measured step times against
// tokens fed, so the same rule stops speculation on a compute-bound CPU at
// batch 8 and keeps it at full length on a launch-bound GPU.
//
// Trees. A node is reached when its parent is and it is the right token.
// The first child of a node (the proposer's best guess) is right with the
// job's first-guess acceptance alpha; the other children together with
// (1 - alpha) * beta, beta the measured rate at which another candidate was
// right when the first was wrong (per proposer and job, like alpha), split
// by the proposer's probabilities (the suffix index's counts) or 1/2, 1/4,
// ... by rank. The same rule as for a chain keeps the nodes whose reach
// probability pays for a verify row, best first, at most max_draft, and
// orders them best first with siblings in the proposer's order (a step with
// less room takes a prefix; the first guess stays the first child).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "runtime/engine/engine_api.h"
#include "runtime/speculative/draft_tree.h"
#include "runtime/speculative/prompt_lookup.h"
#include "runtime/speculative/suffix_index.h"

namespace ghostd::runtime {

// Step time against tokens fed: t = base + per_token * tokens, fitted by
// exponentially weighted least squares over recent steps, with a weak prior
// so that the first steps have an estimate.
class StepCostModel {
 public:
  StepCostModel(double prior_base_s, double prior_per_token_s);
  void observe(int tokens, double seconds);
  double base() const { return base_; }
  double per_token() const { return per_token_; }
  double predict(int tokens) const { return base_ + per_token_ * tokens; }
  uint64_t observations() const { return n_; }

 private:
  void refit();
  double w_ = 0, sx_ = 0, sy_ = 0, sxx_ = 0, sxy_ = 0;
  double base_, per_token_;
  uint64_t n_ = 0;
};

struct SpeculationOptions {
  bool lookup = true;
  bool suffix = true;
  bool typed = true;
  bool model = true;  // used only where the engine has a draft model
  int max_draft = 8;  // per job and step (a tree's nodes)
  // The suffix index and prompt lookup may offer token trees (several
  // guesses verified in one pass); false: chains only.
  bool trees = true;
  // false: every proposer proposes max_draft tokens whatever it costs (tests
  // of exactness and rollback want long drafts).
  bool adaptive = true;
  PromptLookupConfig lookup_config;
  // 64 documents of 8k tokens: about 260 MB at most (docs/benchmarks.md).
  SuffixIndexConfig suffix_config{.max_documents = 64};
};

struct DraftPlan {
  DraftSource source = DraftSource::kLookup;
  int length = 0;                // 0: no speculation this step
  std::vector<int32_t> tokens;   // empty for the draft model (made next step)
  std::vector<int32_t> parents;  // a draft tree's (DraftTree::parents); empty: a chain
};

// Thread-safety: engine thread only.
class Speculator {
 public:
  explicit Speculator(SpeculationOptions options, bool has_draft_model);

  void add_job(JobId id, const CompletionJob& job);
  // Copies the job's per-proposer counts into its metrics and forgets it;
  // its output joins its document's completions in the suffix index.
  void end_job(JobId id, std::span<const int32_t> output, JobMetrics& metrics);

  // Measured times (seconds) of target steps and of draft-model rounds.
  void observe_step(int tokens_fed, double seconds) { target_cost_.observe(tokens_fed, seconds); }
  void observe_draft_round(int seqs, double seconds) { draft_cost_.observe(seqs, seconds); }

  // The draft model's mirror of a step (paid every step while it is loaded).
  void observe_mirror(double seconds);
  // Whether the draft model still earns its keep: after a probation (16
  // verifies of its drafts, or 64 steps), false when the tokens its best
  // draft length is expected to gain per step at batch 1 do not cover the
  // mirror's time. The engine then stops running it.
  bool model_pays() const;
  void drop_model() { has_model_ = false; }

  // Before a round of propose() calls: the next step's expected size.
  void begin_round(int sampling_jobs, int tokens_fed);
  // The drafts for `id`'s next step, given its tokens (prompt + output) and
  // the number it generated. `sampled`: temperature > 0 (every proposer works
  // with rejection sampling; the draft model's distribution is kept).
  DraftPlan propose(JobId id, std::span<const int32_t> tokens, int generated);
  // After a verify step: `accepted` of `proposed` drafts (tree nodes) from
  // `source` passed; `guesses` says which guesses were right level by level
  // (GuessOutcome::chain for a chain). alpha follows the first guesses, the
  // second-guess rate beta the other candidates when the first was wrong.
  void record(JobId id, DraftSource source, int proposed, int accepted, const GuessOutcome& guesses);
  void record(JobId id, DraftSource source, int proposed, int accepted) {
    record(id, source, proposed, accepted, GuessOutcome::chain(proposed, accepted));
  }
  double engine_second_guess(DraftSource s) const { return global_alt_[static_cast<int>(s)]; }

  // The acceptance the policy currently assumes for a new job (metrics, tests).
  double engine_acceptance(DraftSource s) const { return global_accept_[static_cast<int>(s)]; }
  const StepCostModel& target_cost() const { return target_cost_; }
  const StepCostModel& draft_cost() const { return draft_cost_; }

 private:
  struct Job {
    std::array<double, kNumDraftSources> accept{};
    std::array<double, kNumDraftSources> alt{};  // beta: another candidate right when the first is wrong
    std::array<DraftCounts, kNumDraftSources> counts{};
    std::vector<int32_t> hint;
    bool hint_live = false;  // the output has followed the hint so far
    int prompt_len = 0;
    std::string document;
  };
  // Longest worthwhile length (<= available) for acceptance alpha and a
  // marginal cost per token; and the expected tokens gained per second.
  int worthwhile(double alpha, double cost_per_token, int available, double* gain) const;
  // The worthwhile part of a proposed tree (at most max_draft nodes) and its
  // expected gain, for per-level acceptance alpha.
  DraftTree worthwhile_tree(const DraftTree& tree, double alpha, double beta, double cost_per_token,
                            double* gain) const;

  SpeculationOptions options_;
  bool has_model_;
  std::map<JobId, Job> jobs_;
  SuffixIndex suffix_;
  std::array<double, kNumDraftSources> global_accept_;
  std::array<double, kNumDraftSources> global_alt_;
  StepCostModel target_cost_;
  StepCostModel draft_cost_;
  double step_rate_ = 0;  // tokens per second of the coming step without drafts
  double mirror_s_ = 0;   // exponential average of the mirror's time
  uint64_t mirrors_ = 0;
  uint64_t model_verifies_ = 0;
};

}  // namespace ghostd::runtime
