// Verify: which of a job's draft tokens the target's step accepts.
//
// Row i of the target's verify rows predicts the token after feed position i
// (the feed is [last, d1..dk]). Greedy keeps the longest prefix of drafts that
// equals the target's argmax, then the target's own token: exactly the tokens
// of plain greedy decoding. With temperature > 0, rejection sampling
// (Leviathan et al. 2023; Chen et al. 2023) keeps the target's distribution
// exactly: draft d_i is accepted with probability min(1, p_i(d_i) / q_i(d_i));
// the first rejection draws from the residual max(0, p_i - q_i), renormalized;
// if every draft is accepted, one more token is drawn from p_k. A proposer
// without a distribution (prompt lookup, suffix index, typed-through) is a
// point mass: q_i(d_i) = 1.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "runtime/engine/sampling.h"

namespace ghostd::runtime {

// `argmax` holds the k + 1 verify rows' argmax; returns accepted + 1 tokens.
std::vector<int32_t> verify_greedy(std::span<const int32_t> drafts, std::span<const int32_t> argmax);

// `p`: k + 1 dense target distributions (row-major, `vocab` each), the
// sampler's processed probabilities; `q`: k dense draft distributions, or
// empty for a point-mass proposer. Draws come from `sampler`'s generator;
// `scratch` holds the residual. Returns accepted + 1 tokens.
std::vector<int32_t> verify_sampled(std::span<const int32_t> drafts, std::span<const float> p,
                                    std::span<const float> q, size_t vocab, Sampler& sampler,
                                    std::vector<float>& scratch);

}  // namespace ghostd::runtime
