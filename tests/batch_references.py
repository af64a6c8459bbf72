"""Brute-force O(B³) references of the batch losses, written straight from the definitions.

Deliberately naive (Python loops over anchors, positives and negatives, plain autograd) so
that they are easy to check by eye; only for small batches in tests.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tripletlab.functional.distances import pairwise_distances
from tripletlab.functional.smoothing import smooth_hinge


def _reduce(values: list[Tensor], per_anchor: list[Tensor], reduction: str, zero: Tensor):
    if reduction == "none":
        return torch.stack(per_anchor) if per_anchor else zero.reshape(0)
    if not values:
        return zero
    stacked = torch.stack(values)
    total = stacked.sum()
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / len(values)
    active = int((stacked.detach() > 0).sum())
    return total / max(active, 1)


def _setup(embeddings, labels, metric, ref_embeddings, ref_labels):
    if ref_embeddings is None:
        d = pairwise_distances(embeddings, metric=metric)
        ref_labels, self_case = labels, True
    else:
        d = pairwise_distances(embeddings, ref_embeddings, metric=metric)
        self_case = False
    labels, ref_labels = labels.tolist(), ref_labels.tolist()
    n_anchor, n_col = d.shape

    def positives(a):
        return [
            p for p in range(n_col) if ref_labels[p] == labels[a] and not (self_case and p == a)
        ]

    def negatives(a):
        return [n for n in range(n_col) if ref_labels[n] != labels[a]]

    return d, n_anchor, positives, negatives


def batch_all_reference(
    embeddings: Tensor,
    labels: Tensor,
    margin: float = 0.2,
    metric: str = "sqeuclidean",
    smoothing: float | None = None,
    reduction: str = "mean_active",
    ref_embeddings: Tensor | None = None,
    ref_labels: Tensor | None = None,
) -> Tensor:
    d, n_anchor, positives, negatives = _setup(
        embeddings, labels, metric, ref_embeddings, ref_labels
    )
    zero = d.sum() * 0
    values, per_anchor = [], []
    for a in range(n_anchor):
        mine = [
            smooth_hinge(d[a, p] - d[a, n] + margin, smoothing)
            for p in positives(a)
            for n in negatives(a)
        ]
        values += mine
        per_anchor.append(torch.stack(mine).sum() if mine else zero)
    return _reduce(values, per_anchor, reduction, zero)


def batch_hard_reference(
    embeddings: Tensor,
    labels: Tensor,
    margin: float = 0.2,
    metric: str = "sqeuclidean",
    smoothing: float | None = None,
    reduction: str = "mean",
    ref_embeddings: Tensor | None = None,
    ref_labels: Tensor | None = None,
) -> Tensor:
    d, n_anchor, positives, negatives = _setup(
        embeddings, labels, metric, ref_embeddings, ref_labels
    )
    zero = d.sum() * 0
    values, per_anchor = [], []
    for a in range(n_anchor):
        pos, neg = positives(a), negatives(a)
        if not pos or not neg:
            per_anchor.append(zero)
            continue
        d_ap = torch.stack([d[a, p] for p in pos]).max()
        d_an = torch.stack([d[a, n] for n in neg]).min()
        value = smooth_hinge(d_ap - d_an + margin, smoothing)
        values.append(value)
        per_anchor.append(value)
    return _reduce(values, per_anchor, reduction, zero)


def batch_semi_hard_reference(
    embeddings: Tensor,
    labels: Tensor,
    margin: float = 0.2,
    metric: str = "sqeuclidean",
    smoothing: float | None = None,
    fallback: str = "hardest",
    reduction: str = "mean",
    ref_embeddings: Tensor | None = None,
    ref_labels: Tensor | None = None,
) -> Tensor:
    d, n_anchor, positives, negatives = _setup(
        embeddings, labels, metric, ref_embeddings, ref_labels
    )
    zero = d.sum() * 0
    values, per_anchor = [], []
    for a in range(n_anchor):
        neg = negatives(a)
        mine = []
        for p in positives(a):
            if not neg:
                continue
            farther = [n for n in neg if float(d[a, n].detach()) > float(d[a, p].detach())]
            if farther:
                d_an = torch.stack([d[a, n] for n in farther]).min()
            elif fallback == "hardest":
                d_an = torch.stack([d[a, n] for n in neg]).min()
            elif fallback == "easiest":
                d_an = torch.stack([d[a, n] for n in neg]).max()
            else:
                continue
            mine.append(smooth_hinge(d[a, p] - d_an + margin, smoothing))
        values += mine
        per_anchor.append(torch.stack(mine).sum() if mine else zero)
    return _reduce(values, per_anchor, reduction, zero)


def triplet_class_reference(
    embeddings: Tensor, labels: Tensor, margin: float, metric: str = "sqeuclidean"
) -> dict[str, int]:
    """Counts of easy / semi-hard / hard valid triplets, by enumeration."""
    d, n_anchor, positives, negatives = _setup(embeddings, labels, metric, None, None)
    d = d.detach()
    counts = {"easy": 0, "semi_hard": 0, "hard": 0}
    for a in range(n_anchor):
        for p in positives(a):
            for n in negatives(a):
                d_ap, d_an = d[a, p], d[a, n]
                if bool(d_an > d_ap + margin):
                    counts["easy"] += 1
                elif bool(d_an > d_ap):
                    counts["semi_hard"] += 1
                else:
                    counts["hard"] += 1
    return counts


def random_batch(seed: int, n: int, n_classes: int, dim: int = 3, integer: bool = False):
    """A small float64 batch; integer-valued embeddings make distance ties exact.

    Integer batches are symmetric (v and −v, plus 0 when n is odd, shuffled) so that their
    mean is exactly 0: pairwise_distances centres the batch on its mean before the GEMM, and
    a non-integer mean would round the distances and break the ties.
    """
    g = torch.Generator().manual_seed(seed)
    if integer:
        half = torch.randint(-2, 3, (n // 2, dim), generator=g).double()
        x = torch.cat([half, -half, torch.zeros(n % 2, dim, dtype=torch.float64)])
        x = x[torch.randperm(n, generator=g)]
    else:
        x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    y = torch.randint(0, max(1, n_classes), (n,), generator=g)
    return x, y
