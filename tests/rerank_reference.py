"""Brute-force references of k-reciprocal re-ranking and query expansion: the authors' numpy
code (Zhong et al. 2017, github.com/zhunzhong07/person-re-ranking, re_ranking()), kept line for
line but in float64, with stable sorts, and with squared distances computed directly."""

from __future__ import annotations

import numpy as np


def re_ranking_reference(q, g, k1=20, k2=6, lambda_value=0.3):
    """g=None: the queries are the gallery (one graph over them; N × N result)."""
    feat = (q if g is None else np.concatenate([q, g])).astype(np.float64)
    query_num, all_num = len(q), len(feat)
    gallery_start = 0 if g is None else query_num
    original_dist = ((feat[:, None, :] - feat[None, :, :]) ** 2).sum(-1)
    original_dist = np.transpose(original_dist / np.max(original_dist, axis=0))
    V = np.zeros_like(original_dist)
    initial_rank = np.argsort(original_dist, kind="stable").astype(np.int64)
    for i in range(all_num):
        forward_k_neigh_index = initial_rank[i, : k1 + 1]
        backward_k_neigh_index = initial_rank[forward_k_neigh_index, : k1 + 1]
        fi = np.where(backward_k_neigh_index == i)[0]
        k_reciprocal_index = forward_k_neigh_index[fi]
        k_reciprocal_expansion_index = k_reciprocal_index
        for j in range(len(k_reciprocal_index)):
            candidate = k_reciprocal_index[j]
            half = int(np.around(k1 / 2)) + 1
            candidate_forward = initial_rank[candidate, :half]
            candidate_backward = initial_rank[candidate_forward, :half]
            fi_candidate = np.where(candidate_backward == candidate)[0]
            candidate_k_reciprocal_index = candidate_forward[fi_candidate]
            if len(np.intersect1d(candidate_k_reciprocal_index, k_reciprocal_index)) > 2 / 3 * len(
                candidate_k_reciprocal_index
            ):
                k_reciprocal_expansion_index = np.append(
                    k_reciprocal_expansion_index, candidate_k_reciprocal_index
                )
        k_reciprocal_expansion_index = np.unique(k_reciprocal_expansion_index)
        weight = np.exp(-original_dist[i, k_reciprocal_expansion_index])
        V[i, k_reciprocal_expansion_index] = weight / np.sum(weight)
    original_dist = original_dist[:query_num,]
    if k2 != 1:
        V_qe = np.zeros_like(V)
        for i in range(all_num):
            V_qe[i, :] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe
    jaccard_dist = np.zeros_like(original_dist)
    for i in range(query_num):
        temp_min = np.minimum(V[i][None, :], V).sum(axis=1)
        jaccard_dist[i] = 1 - temp_min / (2 - temp_min)
    final_dist = jaccard_dist * (1 - lambda_value) + original_dist * lambda_value
    return final_dist[:query_num, gallery_start:]


def query_expansion_reference(q, g, n, alpha):
    """α-QE by loops: new query = normalise(q̂ + Σ_{top n} max(sim, 0)^α ĝ); α = 0 is AQE."""
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    out = np.empty_like(qn)
    for i in range(len(qn)):
        sim = gn @ qn[i]
        top = np.argsort(-sim, kind="stable")[:n]
        weights = np.maximum(sim[top], 0) ** alpha if alpha > 0 else np.ones(len(top))
        new = qn[i] + (weights[:, None] * gn[top]).sum(axis=0)
        out[i] = new / np.linalg.norm(new)
    return out
