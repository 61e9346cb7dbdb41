#include "runtime/speculative/speculator.h"

#include <algorithm>
#include <cmath>

namespace ghostd::runtime {

namespace {
constexpr double kDecay = 0.97;       // per observed step: about the last 30 steps count
constexpr double kJobRate = 0.25;     // per verified draft token, a job's own average
constexpr double kEngineRate = 0.05;  // and the engine-wide one new jobs start from
// Before anything is measured: a decode step of 1 ms, 0.1 ms per extra token
// (speculation pays), a draft round of 0.3 ms. Measurements replace these
// within a few steps.
constexpr double kPriorBase = 1e-3, kPriorPerToken = 1e-4;
constexpr double kPriorDraftBase = 3e-4, kPriorDraftPerSeq = 2e-5;
// Starting acceptance per DraftSource (lookup, suffix, model, typed).
constexpr std::array<double, kNumDraftSources> kPriorAccept{0.5, 0.5, 0.6, 0.9};
// Starting second-guess rate: modest, so branches must earn their rows.
constexpr double kPriorAlt = 0.25;
}  // namespace

StepCostModel::StepCostModel(double prior_base_s, double prior_per_token_s)
    : base_(prior_base_s), per_token_(prior_per_token_s) {
  // Two pseudo-observations that fade as real ones come in.
  for (int x : {1, 33}) {
    const double y = prior_base_s + prior_per_token_s * x;
    w_ += 1;
    sx_ += x;
    sy_ += y;
    sxx_ += double(x) * x;
    sxy_ += x * y;
  }
}

void StepCostModel::observe(int tokens, double seconds) {
  if (tokens <= 0 || !(seconds >= 0) || !std::isfinite(seconds)) return;
  w_ *= kDecay, sx_ *= kDecay, sy_ *= kDecay, sxx_ *= kDecay, sxy_ *= kDecay;
  w_ += 1;
  sx_ += tokens;
  sy_ += seconds;
  sxx_ += double(tokens) * tokens;
  sxy_ += tokens * seconds;
  ++n_;
  refit();
}

void StepCostModel::refit() {
  const double mean_x = sx_ / w_, mean_y = sy_ / w_;
  const double var_x = sxx_ / w_ - mean_x * mean_x;
  // Steps of (nearly) one size say nothing about the slope: keep the last
  // slope and fit only the intercept.
  if (var_x > 0.25) per_token_ = std::max(0.0, (sxy_ / w_ - mean_x * mean_y) / var_x);
  base_ = std::max(0.0, mean_y - per_token_ * mean_x);
}

Speculator::Speculator(SpeculationOptions options, bool has_draft_model)
    : options_(std::move(options)),
      has_model_(has_draft_model),
      suffix_(options_.suffix_config),
      global_accept_(kPriorAccept),
      global_alt_{kPriorAlt, kPriorAlt, kPriorAlt, kPriorAlt},
      target_cost_(kPriorBase, kPriorPerToken),
      draft_cost_(kPriorDraftBase, kPriorDraftPerSeq) {}

void Speculator::add_job(JobId id, const CompletionJob& job) {
  Job j;
  j.accept = global_accept_;
  j.alt = global_alt_;
  j.hint = job.draft_hint;
  j.hint_live = options_.typed && !j.hint.empty();
  j.prompt_len = static_cast<int>(job.prompt.size());
  j.document = job.document_id;
  // Re-indexes only what changed since this document's last prompt.
  if (options_.suffix && !job.document_id.empty()) suffix_.update_document(job.document_id, job.prompt);
  jobs_[id] = std::move(j);
}

void Speculator::end_job(JobId id, std::span<const int32_t> output, JobMetrics& metrics) {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return;
  if (options_.suffix && !it->second.document.empty() && !output.empty())
    suffix_.add_completion(it->second.document, output);
  for (int s = 0; s < kNumDraftSources; ++s) metrics.drafts[s] = it->second.counts[static_cast<size_t>(s)];
  jobs_.erase(it);
}

void Speculator::observe_mirror(double seconds) {
  if (!(seconds >= 0) || !std::isfinite(seconds)) return;
  mirror_s_ = mirrors_ == 0 ? seconds : mirror_s_ + (1 - kDecay) * (seconds - mirror_s_);
  ++mirrors_;
}

bool Speculator::model_pays() const {
  if (!has_model_ || !options_.adaptive) return true;
  if (model_verifies_ < 16 && mirrors_ < 64) return true;  // still on probation
  const double t1 = target_cost_.predict(1);
  if (!(t1 > 0)) return true;
  const double rate = 1.0 / t1;
  const double cost = target_cost_.per_token() + draft_cost_.predict(1);
  const double alpha = global_accept_[static_cast<size_t>(DraftSource::kModel)];
  double p = 1, gain = 0, best = 0;
  for (int i = 1; i <= options_.max_draft; ++i) {
    p *= alpha;
    gain += p - cost * rate;
    best = std::max(best, gain);
  }
  return best > mirror_s_ * rate;
}

void Speculator::begin_round(int sampling_jobs, int tokens_fed) {
  const double t = target_cost_.predict(std::max(1, tokens_fed));
  step_rate_ = t > 0 ? std::max(1, sampling_jobs) / t : 0;
}

int Speculator::worthwhile(double alpha, double cost_per_token, int available, double* gain) const {
  double p = 1, g = 0;
  int k = 0;
  for (int i = 1; i <= available; ++i) {
    p *= alpha;
    // A token pays while what it is expected to add beats what its time would
    // give the step otherwise.
    if (!options_.adaptive) {
      g += p;
    } else {
      if (p <= cost_per_token * step_rate_) break;
      g += p - cost_per_token * step_rate_;
    }
    k = i;
  }
  *gain = g;
  return k;
}

DraftTree Speculator::worthwhile_tree(const DraftTree& tree, double alpha, double beta, double cost_per_token,
                                      double* gain) const {
  const size_t n = tree.size();
  // Children of each node (index p + 1; 0 is the root), in proposer order.
  std::vector<std::vector<size_t>> kids(n + 1);
  for (size_t i = 0; i < n; ++i) kids[static_cast<size_t>(tree.parents[i] + 1)].push_back(i);
  std::vector<double> reach(n);
  for (size_t i = 0; i < n; ++i) {  // parents come first
    const int32_t p = tree.parents[i];
    const double up = p < 0 ? 1.0 : reach[static_cast<size_t>(p)];
    const std::vector<size_t>& sib = kids[static_cast<size_t>(p + 1)];
    if (sib.front() == i) {
      reach[i] = up * alpha;
      continue;
    }
    // This candidate's part of the others' (1 - alpha) * beta.
    double mine = 0, all = 0;
    for (size_t r = 1; r < sib.size(); ++r) {
      const double w = tree.probs.empty() ? std::ldexp(1.0, -static_cast<int>(r)) : tree.probs[sib[r]];
      all += w;
      if (sib[r] == i) mine = w;
    }
    reach[i] = all > 0 ? up * (1.0 - alpha) * beta * mine / all : 0.0;
  }
  // Keep the best nodes (a child never beats its parent; ties to the earlier).
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return reach[a] > reach[b]; });
  const double bar = options_.adaptive ? cost_per_token * step_rate_ : 0.0;
  std::vector<char> keep(n, 0);
  double g = 0;
  int kept = 0;
  for (size_t i : order) {
    if (kept >= options_.max_draft || reach[i] <= bar) break;
    const int32_t p = tree.parents[i];
    if (p >= 0 && !keep[static_cast<size_t>(p)]) continue;
    keep[i] = 1;
    g += reach[i] - bar;
    ++kept;
  }
  *gain = g;
  // Emit best first, a node only after its parent and its kept earlier
  // siblings: a step with less room takes a prefix and keeps the likeliest.
  std::vector<int32_t> index(n, -1);
  std::vector<size_t> next_sib(n + 1, 0);  // per parent: how many kept children placed
  DraftTree out;
  while (static_cast<int>(out.size()) < kept) {
    size_t best = n;
    for (size_t p1 = 0; p1 <= n; ++p1) {
      if (p1 > 0 && index[p1 - 1] < 0) continue;  // parent not placed yet
      const std::vector<size_t>& sib = kids[p1];
      size_t& at = next_sib[p1];
      while (at < sib.size() && !keep[sib[at]]) ++at;
      if (at == sib.size()) continue;
      const size_t c = sib[at];
      if (best == n || reach[c] > reach[best] || (reach[c] == reach[best] && c < best)) best = c;
    }
    const int32_t p = tree.parents[best];
    index[best] = static_cast<int32_t>(out.size());
    ++next_sib[static_cast<size_t>(p + 1)];
    out.tokens.push_back(tree.tokens[best]);
    out.parents.push_back(p < 0 ? -1 : index[static_cast<size_t>(p)]);
    if (!tree.probs.empty()) out.probs.push_back(tree.probs[best]);
  }
  return out;
}

DraftPlan Speculator::propose(JobId id, std::span<const int32_t> tokens, int generated) {
  DraftPlan best;
  auto it = jobs_.find(id);
  if (it == jobs_.end() || options_.max_draft <= 0) return best;
  Job& job = it->second;
  double best_gain = 0;
  const double per_token = target_cost_.per_token();
  auto consider = [&](DraftSource s, std::vector<int32_t> cand, int available, double cost) {
    if (available <= 0) return;
    double gain = 0;
    const int k = worthwhile(job.accept[static_cast<size_t>(s)], cost, available, &gain);
    if (k <= 0 || gain <= best_gain) return;
    best_gain = gain;
    best.source = s;
    best.length = k;
    if (!cand.empty()) cand.resize(static_cast<size_t>(k));
    best.tokens = std::move(cand);
    best.parents.clear();
  };

  // Typed-through: only while every generated token followed the hint.
  if (job.hint_live) {
    const auto out = tokens.subspan(static_cast<size_t>(job.prompt_len));
    if (generated > static_cast<int>(job.hint.size()) ||
        !std::equal(out.begin(), out.end(), job.hint.begin())) {
      job.hint_live = false;
    } else {
      const int avail = std::min<int>(options_.max_draft, static_cast<int>(job.hint.size()) - generated);
      consider(DraftSource::kTyped,
               std::vector<int32_t>(job.hint.begin() + generated, job.hint.begin() + generated + avail),
               avail, per_token);
    }
  }
  // A tree is considered like a chain; a chain-shaped result is a chain.
  auto consider_tree = [&](DraftSource s, const DraftTree& cand) {
    if (cand.empty()) return;
    double gain = 0;
    DraftTree t = worthwhile_tree(cand, job.accept[static_cast<size_t>(s)], job.alt[static_cast<size_t>(s)],
                                  per_token, &gain);
    if (t.empty() || gain <= best_gain) return;
    best_gain = gain;
    best.source = s;
    best.length = static_cast<int>(t.size());
    best.tokens = std::move(t.tokens);
    best.parents.clear();
    if (!t.is_chain()) best.parents = std::move(t.parents);
  };
  // Proposed trees have room for the branches the policy then picks from.
  const int tree_nodes = std::min(kMaxDraftTreeNodes, 2 * options_.max_draft);
  if (options_.suffix && !job.document.empty()) {
    if (options_.trees) {
      consider_tree(DraftSource::kSuffix,
                    suffix_.propose_tree(job.document, tokens, tree_nodes, options_.max_draft).tree);
    } else {
      SuffixProposal p = suffix_.propose(job.document, tokens, options_.max_draft);
      const int avail = static_cast<int>(p.tokens.size());
      consider(DraftSource::kSuffix, std::move(p.tokens), avail, per_token);
    }
  }
  if (options_.lookup) {
    PromptLookupConfig c = options_.lookup_config;
    c.max_draft = options_.max_draft;
    if (options_.trees) {
      consider_tree(DraftSource::kLookup, prompt_lookup_tree(tokens, c, tree_nodes));
    } else {
      std::vector<int32_t> d = prompt_lookup_draft(tokens, c);
      const int avail = static_cast<int>(d.size());
      consider(DraftSource::kLookup, std::move(d), avail, per_token);
    }
  }
  if (has_model_ && options_.model) {
    // Each draft token adds a round of the draft model to the step.
    consider(DraftSource::kModel, {}, options_.max_draft, per_token + draft_cost_.predict(1));
  }
  return best;
}

void Speculator::record(JobId id, DraftSource source, int proposed, int accepted, const GuessOutcome& guesses) {
  if (proposed <= 0) return;
  const size_t s = static_cast<size_t>(source);
  auto update = [&](double& a, double& b, double rate) {
    // Guesses after the first rejection without a second one were never tested.
    for (int i = 0; i < guesses.first_hits; ++i) a += rate * (1.0 - a);
    for (int i = 0; i < guesses.first_misses; ++i) a -= rate * a;
    for (int i = 0; i < guesses.alt_hits; ++i) b += rate * (1.0 - b);
    for (int i = guesses.alt_hits; i < guesses.alt_trials; ++i) b -= rate * b;
  };
  update(global_accept_[s], global_alt_[s], kEngineRate);
  if (source == DraftSource::kModel) ++model_verifies_;
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return;
  update(it->second.accept[s], it->second.alt[s], kJobRate);
  DraftCounts& c = it->second.counts[s];
  c.proposed += proposed;
  c.accepted += accepted;
  ++c.verifies;
}

}  // namespace ghostd::runtime
