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
#include "runtime/speculative/draft_tree.h"

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

// Tree verify. The feed is [last, node 0, node 1, ...]: row 0 predicts after
// the last token, row i + 1 after node i. Greedy walks from the root to the
// child whose token is the row's argmax while there is one; the output is the
// path's tokens plus the argmax of its last row, exactly plain greedy
// decoding. `path` gets the accepted nodes' indices, root first.
std::vector<int32_t> verify_tree_greedy(const DraftTree& tree, std::span<const int32_t> argmax,
                                        std::vector<int32_t>& path);

// With temperature > 0 (point-mass proposers: a tree's nodes carry no
// distribution): at each node its children are tried in order, child c
// accepted with probability r(c) / sum(r), where r starts as the node's row
// of `p` and each rejected child's entry is zeroed; when every child is
// rejected the token is drawn from what is left of r. This is recursive
// rejection sampling over deterministic drafts (SpecInfer): each output token
// has the target's distribution exactly, whatever the tree.
std::vector<int32_t> verify_tree_sampled(const DraftTree& tree, std::span<const float> p, size_t vocab,
                                         Sampler& sampler, std::vector<float>& scratch,
                                         std::vector<int32_t>& path);

}  // namespace ghostd::runtime
