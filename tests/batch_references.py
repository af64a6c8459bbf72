"""Brute-force O(B³) references of the batch losses, written straight from the definitions.

Deliberately naive (Python loops over anchors, positives and negatives, plain autograd) so
that they are easy to check by eye; only for small batches in tests.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tripletlab.functional.distances import safe_sqrt
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


def direct_distance(x: Tensor, y: Tensor, metric: str) -> Tensor:
    """D(x, y) of two 1-D rows straight from the definition, in the rows' dtype.

    float32 rows are differenced and summed in float64, then rounded: the correctly rounded
    float32 distance (a float32 brute force that is exact on ties and integer data).
    """
    wide = torch.float64
    if metric == "cosine":
        x_norm, y_norm = torch.linalg.vector_norm(x), torch.linalg.vector_norm(y)
        if float(x_norm.detach()) <= 1e-12 or float(y_norm.detach()) <= 1e-12:
            return (x * 0).sum() + 1  # the cosine of a zero vector is defined as 0
        diff = (x / x_norm).to(wide) - (y / y_norm).to(wide)
        return ((diff * diff).sum() / 2).to(x.dtype)  # ‖x̂ − ŷ‖²/2 = 1 − cos
    diff = x.to(wide) - y.to(wide)
    squared = (diff * diff).sum().to(x.dtype)
    if metric == "sqeuclidean":
        return squared
    return safe_sqrt(squared[None])[0]


def direct_distance_matrix(x: Tensor, y: Tensor | None, metric: str) -> Tensor:
    """All pairs by :func:`direct_distance` (a Python double loop; differentiable)."""
    same = y is None
    y = x if y is None else y
    rows = []
    for a in range(len(x)):
        row = []
        for n in range(len(y)):
            if same and a == n and metric != "cosine":
                row.append((x[a] * 0).sum())
            else:
                row.append(direct_distance(x[a], y[n], metric))
        rows.append(torch.stack(row) if row else x.new_zeros(0))
    return torch.stack(rows) if rows else x.new_zeros((0, len(y)))


def _setup(embeddings, labels, metric, ref_embeddings, ref_labels):
    if ref_embeddings is None:
        d = direct_distance_matrix(embeddings, None, metric)
        ref_labels, self_case = labels, True
    else:
        d = direct_distance_matrix(embeddings, ref_embeddings, metric)
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


def triplet_hinge(d_ap: Tensor, d_an: Tensor, margin: float, smoothing: float | None) -> Tensor:
    """h(d_ap − d_an + m), active exactly when d_an < d_ap + m (the written definition: the
    triplet is easy, loss 0, iff d_an ≥ d_ap + m), decided on d_ap + m as the definitions
    state it — so a float32 near-tie is classified as the class counts classify it."""
    value = smooth_hinge(d_ap - d_an + margin, smoothing)
    if smoothing:
        return value
    return torch.where(d_an < d_ap + margin, value, torch.zeros_like(value))


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
            triplet_hinge(d[a, p], d[a, n], margin, smoothing)
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
