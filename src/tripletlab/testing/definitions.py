"""The definitions the conformance suites check against, restated row by row.

Independent of tripletlab's own code: distances, the hinge and its smoothing, the
reductions, hand-derived distance gradients, and the per-triplet and per-pair losses.

Example:
    >>> import torch
    >>> x, y = torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]])
    >>> distance(x, y, "euclidean"), distance(x, y, "sqeuclidean")
    (tensor([5.]), tensor([25.]))
    >>> triplet_definition(x, x, y, margin=0.2, metric="sqeuclidean", smoothing=None)
    tensor([0.])
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "distance",
    "distance_grad",
    "hinge",
    "hinge_grad",
    "pair_definition",
    "reduce_values",
    "reduction_scale",
    "triplet_definition",
]

#: Norms below this count as zero (a zero vector has no direction: cosine is undefined).
_UNIT_EPS = 1e-12


def distance(x: Tensor, y: Tensor, metric: str) -> Tensor:
    if metric == "cosine":
        xn, yn = x.norm(dim=1), y.norm(dim=1)
        dot = (x * y).sum(dim=1)
        defined = (xn > 0) & (yn > 0)
        cos = torch.where(defined, dot / (xn * yn).clamp_min(_UNIT_EPS), torch.zeros_like(dot))
        return 1 - cos
    squared = ((x - y) ** 2).sum(dim=1)
    return squared if metric == "sqeuclidean" else squared.sqrt()


def distance_grad(x: Tensor, y: Tensor, metric: str) -> Tensor:
    """∂D(x, y)/∂x, row by row."""
    if metric == "sqeuclidean":
        return 2 * (x - y)
    if metric == "euclidean":
        diff = x - y
        norm = diff.norm(dim=1, keepdim=True)
        return torch.where(norm > 0, diff / norm.clamp_min(_UNIT_EPS), torch.zeros_like(diff))
    xn, yn = x.norm(dim=1, keepdim=True), y.norm(dim=1, keepdim=True)
    cos = (x * y).sum(dim=1, keepdim=True) / (xn * yn).clamp_min(_UNIT_EPS)
    grad_cos = y / (xn * yn).clamp_min(_UNIT_EPS) - cos * x / (xn * xn).clamp_min(_UNIT_EPS)
    return torch.where((xn > 0) & (yn > 0), -grad_cos, torch.zeros_like(grad_cos))


def hinge(x: Tensor, smoothing: float | None) -> Tensor:
    if not smoothing:
        return x.clamp_min(0)
    return smoothing * torch.nn.functional.softplus(x / smoothing)


def hinge_grad(x: Tensor, smoothing: float | None) -> Tensor:
    if not smoothing:
        return (x > 0).to(x.dtype)
    return torch.sigmoid(x / smoothing)


def reduce_values(values: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return values
    if reduction == "sum":
        return values.sum()
    if reduction == "mean":
        return values.sum() / max(values.numel(), 1)
    return values.sum() / max(int((values > 0).sum()), 1)


def reduction_scale(values: Tensor, reduction: str) -> float:
    """d(reduced)/d(value_i) for the reductions (``none`` is summed by the checker)."""
    if reduction in ("none", "sum"):
        return 1.0
    if reduction == "mean":
        return 1.0 / max(values.numel(), 1)
    return 1.0 / max(int((values > 0).sum()), 1)


def triplet_definition(
    a: Tensor, p: Tensor, n: Tensor, margin: float, metric: str, smoothing: float | None
) -> Tensor:
    """Per-triplet losses ``h(D(a, p) − D(a, n) + margin)`` straight from the definition."""
    return hinge(distance(a, p, metric) - distance(a, n, metric) + margin, smoothing)


def pair_definition(
    x1: Tensor, x2: Tensor, same: Tensor, margin: float, form: str, metric: str
) -> Tensor:
    """Per-pair contrastive losses straight from the definition."""
    d = distance(x1, x2, metric)
    y = same.to(d.dtype)
    negative = (margin - d).clamp_min(0) ** 2 if form == "hadsell" else (margin - d**2).clamp_min(0)
    return y * d**2 + (1 - y) * negative
