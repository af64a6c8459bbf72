"""Brute-force references for kNN search and retrieval / verification metrics (tests only).

Written the slow, obvious way: float64 distances from the formula, a full stable sort of
every row, and a Python loop over queries that applies each metric's definition
(Musgrave et al. 2020) literally. Independent of tripletlab's chunked, vectorised code.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def naive_distances(x: Tensor, y: Tensor, metric: str) -> Tensor:
    """(N, M) float64 distances from the definition (no GEMM trick)."""
    x, y = x.double(), y.double()
    if metric == "cosine":
        xn = x / x.norm(dim=1, keepdim=True).clamp_min(1e-300)
        yn = y / y.norm(dim=1, keepdim=True).clamp_min(1e-300)
        return 1 - xn @ yn.T
    squared = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    return squared if metric == "sqeuclidean" else squared.sqrt()


def naive_knn(
    queries: Tensor, references: Tensor | None, k: int, metric: str
) -> tuple[Tensor, Tensor]:
    """k nearest by a full stable sort (ties: lower index first); self excluded when
    ``references`` is None."""
    same = references is None
    refs = queries if same else references
    d = naive_distances(queries, refs, metric)
    if same:
        d.fill_diagonal_(math.inf)
    values, order = torch.sort(d, dim=1, stable=True)
    return values[:, :k], order[:, :k]


def naive_retrieval(
    embeddings: Tensor,
    labels: Tensor,
    metric: str = "sqeuclidean",
    ks: tuple[int, ...] = (1, 5, 10),
    knn_k: int = 5,
    references: Tensor | None = None,
    reference_labels: Tensor | None = None,
) -> dict[str, float]:
    """Each metric from its definition, one query at a time."""
    same = references is None
    refs = embeddings if same else references
    ref_labels = labels if same else reference_labels
    d = naive_distances(embeddings, refs, metric)
    totals: dict[str, float] = {}
    n = 0
    for q in range(len(embeddings)):
        order = [j for j in torch.sort(d[q], stable=True).indices.tolist() if not (same and j == q)]
        rel = [int(ref_labels[j] == labels[q]) for j in order]
        r = sum(rel)
        if r == 0:
            continue
        n += 1
        scores = {
            "precision_at_1": rel[0],
            "r_precision": sum(rel[:r]) / r,
            "map_at_r": sum(sum(rel[: i + 1]) / (i + 1) for i in range(r) if rel[i]) / r,
        }
        for k in ks:
            scores[f"recall_at_{k}"] = float(any(rel[:k]))
        votes: dict[int, list[int]] = {}
        for position, j in enumerate(order[:knn_k]):
            votes.setdefault(int(ref_labels[j]), []).append(position)
        winner = max(votes, key=lambda c: (len(votes[c]), -votes[c][0]))
        scores["knn_accuracy"] = float(winner == int(labels[q]))
        for name, value in scores.items():
            totals[name] = totals.get(name, 0.0) + value
    result = {name: value / n for name, value in totals.items()} if n else {}
    result["n_queries"] = n
    result["n_lone_queries"] = len(embeddings) - n
    return result


def naive_tar_at_far(distances: np.ndarray, same: np.ndarray, far: float) -> float:
    """Largest TAR over every threshold τ ∈ {−∞} ∪ distances with FAR(τ) ≤ far."""
    best = 0.0
    for tau in np.concatenate([[-np.inf], np.unique(distances)]):
        accepted = distances <= tau
        far_tau = accepted[~same].mean()
        if far_tau <= far:
            best = max(best, accepted[same].mean())
    return float(best)


def naive_best_accuracy(distances: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(best accuracy, its threshold) over every threshold, predicting same iff d ≤ τ."""
    best, best_tau = -1.0, 0.0
    for tau in np.concatenate([[-np.inf], np.unique(distances)]):
        accuracy = ((distances <= tau) == same).mean()
        if accuracy > best:
            best, best_tau = accuracy, tau
    return float(best), float(best_tau)


def naive_auc(distances: np.ndarray, same: np.ndarray) -> float:
    """P(d_pos < d_neg) + ½·P(d_pos = d_neg): the Mann–Whitney form of the ROC AUC."""
    pos, neg = distances[same], distances[~same]
    less = (pos[:, None] < neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(less + 0.5 * ties)
