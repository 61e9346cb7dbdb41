// The engine's speculation stage (Engine members; engine.cpp has the step
// itself): proposing drafts for the next step, the draft model's rounds
// and its mirror of the target's steps, and moving the KV of an accepted
// draft-tree path into place after a tree verify.
#include "runtime/engine/engine.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

namespace ghostd::runtime {

void Engine::move_tree_paths(std::span<const StepSequence> seqs, std::span<const std::vector<int32_t>> sampled) {
  const int bs = options_.block_size;
  slot_copies_.clear();
  std::vector<int32_t> path;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const StepSequence& s = seqs[i];
    if (s.tree_parents.empty() || sampled[i].size() < 2) continue;
    const auto accepted = std::span<const int32_t>(sampled[i]).first(sampled[i].size() - 1);
    if (!fed_tree_path(s.tree_parents, s.tokens, accepted, path)) continue;  // cannot happen: verify walked it
    // Path node j (fed index f >= j) goes to KV index start + j. In order:
    // a later source is past every earlier destination.
    auto slot = [&](int kv) { return s.block_table[static_cast<size_t>(kv / bs)] * bs + kv % bs; };
    for (size_t j = 0; j < path.size(); ++j) {
      const int to = static_cast<int>(j) + 1;
      if (path[j] != to) slot_copies_.push_back({slot(s.start_pos + path[j]), slot(s.start_pos + to)});
    }
  }
  if (slot_copies_.empty()) return;
  model_.copy_kv_slots(kv_, slot_copies_);
  if (draft_ != nullptr && draft_kv_) draft_->copy_kv_slots(*draft_kv_, slot_copies_);
  local_stats_.tree_kv_moves += slot_copies_.size();
}

void Engine::propose_drafts(const StepPlan& plan) {
  int sampling = 0, fed = 0;
  for (const StepSequence& s : plan.seqs) {
    if (s.samples) ++sampling;
    if (s.samples || s.num_draft > 0) continue;
    fed += static_cast<int>(s.tokens.size());  // prefill still to come
  }
  spec_.begin_round(sampling, fed + sampling);
  for (const StepSequence& s : plan.seqs) {
    if (!s.samples) continue;
    auto it = active_.find(s.id);
    // No drafts while token healing still constrains the next token.
    if (it == active_.end() || !it->second.speculate || !it->second.heal.empty()) continue;
    const std::vector<int32_t>* tokens = scheduler_.tokens(s.id);
    if (tokens == nullptr) continue;
    const int generated = static_cast<int>(tokens->size()) - scheduler_.prompt_len(s.id);
    DraftPlan d = spec_.propose(s.id, *tokens, generated);
    if (d.source == DraftSource::kModel && draft_ == nullptr) d.length = 0;
    if (d.length <= 0) {
      scheduler_.set_draft(s.id, {});
      continue;
    }
    it->second.draft_source = d.source;
    // Model drafts are placeholders until the rounds of the verifying step.
    if (d.source == DraftSource::kModel) d.tokens.assign(static_cast<size_t>(d.length), 0);
    if (d.parents.empty()) {
      scheduler_.set_draft(s.id, std::move(d.tokens));
    } else {
      DraftTree tree;
      tree.tokens = std::move(d.tokens);
      tree.parents = std::move(d.parents);
      scheduler_.set_draft_tree(s.id, std::move(tree));
    }
  }
}

void Engine::draft_failed(const std::string& why) {
  spdlog::error("engine: the draft model failed, speculation goes on without it: {}", why);
  local_stats_.draft_error = why;
  draft_ = nullptr;
  spec_.drop_model();
  draft_probs_.clear();
}

void Engine::draft_rounds(StepPlan& plan) {
  draft_probs_.clear();
  if (draft_ == nullptr) return;
  int kmax = 0;
  for (const StepSequence& s : plan.seqs) {
    if (s.num_draft > 0 && active_.at(s.id).draft_source == DraftSource::kModel) kmax = std::max(kmax, s.num_draft);
  }
  if (kmax == 0) return;
  const size_t vocab = static_cast<size_t>(draft_->config().vocab_size);
  std::vector<size_t> members;  // plan indices in this round, in batch order
  std::vector<float> row, probs;
  auto rounds = [&]() -> Status {
    for (int r = 0; r < kmax; ++r) {
      draft_inputs_.clear();
      members.clear();
      for (size_t i = 0; i < plan.seqs.size(); ++i) {
        const StepSequence& s = plan.seqs[i];
        if (s.num_draft <= r || active_.at(s.id).draft_source != DraftSource::kModel) continue;
        draft_inputs_.push_back({std::span<const int32_t>(s.tokens).subspan(static_cast<size_t>(r), 1),
                                 s.start_pos + r, s.block_table, false});
        members.push_back(i);
      }
      const auto t0 = Clock::now();
      GHOSTD_TRY_STATUS(draft_->prepare(draft_inputs_, *draft_kv_));
      GHOSTD_TRY_STATUS(draft_->run(*draft_kv_));
      auto ids = std::span<int32_t>(draft_ids_).first(members.size());
      GHOSTD_TRY_STATUS(draft_->argmax(ids));
      spec_.observe_draft_round(static_cast<int>(members.size()),
                                std::chrono::duration<double>(Clock::now() - t0).count());
      ++local_stats_.draft_rounds;
      for (size_t m = 0; m < members.size(); ++m) {
        StepSequence& s = plan.seqs[members[m]];
        Active& job = active_.at(s.id);
        int32_t d = ids[m];
        if (!job.sampler.greedy()) {
          // Drawn from the draft's processed distribution, kept for the verify.
          row.resize(vocab);
          GHOSTD_TRY_STATUS(draft_->download_logits(static_cast<int>(m), 1, row.data()));
          job.sampler.probabilities(row, probs);
          d = job.sampler.draw(probs);
          if (draft_probs_.size() < plan.seqs.size()) draft_probs_.resize(plan.seqs.size());
          std::vector<float>& q = draft_probs_[members[m]];
          q.insert(q.end(), probs.begin(), probs.end());
        }
        s.tokens[static_cast<size_t>(r) + 1] = d;
      }
    }
    return {};
  };
  try {
    if (Status st = rounds(); !st.ok()) draft_failed(st.message());
  } catch (const std::exception& e) {
    draft_failed(std::string("draft round threw: ") + e.what());
  }
}

void Engine::mirror(std::span<const StepSequence> seqs) {
  if (draft_ == nullptr || seqs.empty()) return;
  try {
    draft_inputs_.clear();
    for (const StepSequence& s : seqs)
      draft_inputs_.push_back({s.tokens, s.start_pos, s.block_table, false, s.tree_parents});
    const auto t0 = Clock::now();
    Status st = draft_->prepare(draft_inputs_, *draft_kv_);
    if (st.ok()) st = draft_->run(*draft_kv_);
    // The mirror's logits are not needed, but argmax is the step's sync point
    // (an error surfaces here, not in a later step).
    if (st.ok()) st = draft_->argmax(std::span<int32_t>(draft_ids_).first(static_cast<size_t>(draft_->prepared_logit_rows())));
    if (!st.ok()) return draft_failed("mirror: " + st.message());
    spec_.observe_mirror(std::chrono::duration<double>(Clock::now() - t0).count());
  } catch (const std::exception& e) {
    draft_failed(std::string("mirror threw: ") + e.what());
  }
}

}  // namespace ghostd::runtime
