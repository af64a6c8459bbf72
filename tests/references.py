"""Brute-force references for the explicit-triplet, pair and lecture losses (tests only).

Written the slow, obvious way — a Python loop over rows, one formula per line, float64 — so
that they are easy to check by eye and independent of tripletlab's vectorised code. The
triplet and pair references stay differentiable (they are built from torch ops), so autograd
of them gives the gradients the custom backward passes must reproduce.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from batch_references import direct_distance


def naive_distance(x: Tensor, y: Tensor, metric: str) -> Tensor:
    """Distance between two 1-D vectors, straight from the formula."""
    if metric == "sqeuclidean":
        return ((x - y) ** 2).sum()
    if metric == "euclidean":
        return torch.sqrt(((x - y) ** 2).sum())
    if metric == "cosine":
        return 1 - (x * y).sum() / (torch.sqrt((x * x).sum()) * torch.sqrt((y * y).sum()))
    raise ValueError(metric)


def naive_hinge(x: Tensor, smoothing: float | None) -> Tensor:
    if not smoothing:
        return torch.clamp(x, min=0)
    return smoothing * torch.log1p(torch.exp(x / smoothing))


def naive_reduce(values: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return values
    if reduction == "sum":
        return values.sum()
    if reduction == "mean":
        return values.sum() / max(len(values), 1)
    if reduction == "mean_active":
        return values.sum() / max(int((values.detach() > 0).sum()), 1)
    raise ValueError(reduction)


def naive_triplet_loss(
    a: Tensor,
    p: Tensor,
    n: Tensor,
    margin: float = 0.2,
    metric: str = "sqeuclidean",
    smoothing: float | None = None,
    reduction: str = "mean",
) -> Tensor:
    """One triplet at a time: h(D(a_i, p_i) − D(a_i, n_i) + margin), then the reduction."""
    losses = [
        naive_hinge(
            naive_distance(a[i], p[i], metric) - naive_distance(a[i], n[i], metric) + margin,
            smoothing,
        )
        for i in range(len(a))
    ]
    values = torch.stack(losses) if losses else torch.zeros(0, dtype=a.dtype)
    return naive_reduce(values, reduction)


def naive_pair_loss(d: Tensor, same: bool, margin: float, form: str) -> Tensor:
    if same:
        return d**2
    if form == "hadsell":
        return torch.clamp(margin - d, min=0) ** 2
    return torch.clamp(margin - d**2, min=0)


def naive_contrastive_loss(
    x1: Tensor,
    x2: Tensor,
    same: Tensor,
    margin: float = 1.0,
    form: str = "hadsell",
    metric: str = "euclidean",
    reduction: str = "mean",
) -> Tensor:
    losses = [
        naive_pair_loss(naive_distance(x1[i], x2[i], metric), bool(same[i]), margin, form)
        for i in range(len(x1))
    ]
    values = torch.stack(losses) if losses else torch.zeros(0, dtype=x1.dtype)
    return naive_reduce(values, reduction)


def naive_batch_contrastive_loss(
    emb: Tensor,
    labels: Tensor,
    margin: float = 1.0,
    form: str = "hadsell",
    metric: str = "euclidean",
    reduction: str = "mean",
) -> Tensor:
    """Every pair i < j of the batch, one at a time; ``none`` gives each sample half of the
    loss of every pair it belongs to."""
    b = len(emb)
    pair_values = []
    per_anchor = [torch.zeros((), dtype=emb.dtype) for _ in range(b)]
    for i in range(b):
        for j in range(i + 1, b):
            # the tie-exact definition: identical rows are exactly 0 apart
            d = direct_distance(emb[i], emb[j], metric)
            value = naive_pair_loss(d, bool(labels[i] == labels[j]), margin, form)
            pair_values.append(value)
            per_anchor[i] = per_anchor[i] + value / 2
            per_anchor[j] = per_anchor[j] + value / 2
    if reduction == "none":
        return torch.stack(per_anchor) if b else torch.zeros(0, dtype=emb.dtype)
    values = torch.stack(pair_values) if pair_values else torch.zeros(0, dtype=emb.dtype)
    return naive_reduce(values, reduction)


# --------------------------------------------------------------- lecture losses, in floats


def py_mae(residuals: list[float]) -> float:
    return sum(abs(r) for r in residuals) / len(residuals)


def py_rmse(residuals: list[float]) -> float:
    return math.sqrt(sum(r * r for r in residuals) / len(residuals))


def py_huber(r: float, delta: float) -> float:
    return 0.5 * r * r if abs(r) <= delta else delta * (abs(r) - 0.5 * delta)


def py_cross_entropy_bits(probabilities: list[list[float]], targets: list[int]) -> list[float]:
    """−log₂ p(target) per sample (one-hot targets)."""
    return [-math.log2(row[t]) for row, t in zip(probabilities, targets, strict=True)]


def py_entropy_bits(p: list[float]) -> float:
    return -sum(x * math.log2(x) for x in p if x > 0)
