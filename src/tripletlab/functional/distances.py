"""Distances between embeddings: pairwise matrices and row-wise vectors.

Three metrics, everywhere in tripletlab:

* ``"sqeuclidean"`` — ‖x − y‖² (the default; the FaceNet form of the triplet loss),
* ``"euclidean"``  — ‖x − y‖, with a gradient that is 0 (not NaN) at distance 0,
* ``"cosine"``     — 1 − cos(x, y) = 1 − ⟨x, y⟩ / (‖x‖‖y‖); a zero vector has cos 0.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from tripletlab.validation import check_choice, check_embeddings, compute_dtype

Metric = Literal["sqeuclidean", "euclidean", "cosine"]
METRICS: tuple[str, ...] = ("sqeuclidean", "euclidean", "cosine")
#: Degree of each metric's homogeneity: D(c·x, c·y) = c^degree · D(x, y) for c > 0.
METRIC_DEGREE = {"sqeuclidean": 2, "euclidean": 1, "cosine": 0}

_COSINE_EPS = 1e-12


class _SafeSqrt(torch.autograd.Function):
    """√d with derivative 1/(2√d) where d > 0 and 0 at d = 0 (plain sqrt gives inf·0 = NaN)."""

    @staticmethod
    def forward(ctx, squared: Tensor) -> Tensor:  # type: ignore[override]
        root = squared.sqrt()
        ctx.save_for_backward(root)
        return root

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:  # type: ignore[override]
        (root,) = ctx.saved_tensors
        positive = root > 0
        safe = torch.where(positive, root, torch.ones_like(root))
        return torch.where(positive, grad_output / (2 * safe), torch.zeros_like(root))


def safe_sqrt(squared: Tensor) -> Tensor:
    """√x for x ≥ 0 whose gradient at 0 is 0 instead of NaN.

    Example:
        >>> x = torch.zeros(3, requires_grad=True)
        >>> safe_sqrt(x).sum().backward()
        >>> x.grad
        tensor([0., 0., 0.])
    """
    return _SafeSqrt.apply(squared)


def pairwise_distances(
    x: Tensor, y: Tensor | None = None, metric: Metric = "sqeuclidean"
) -> Tensor:
    """Matrix of distances between the rows of ``x`` and the rows of ``y``.

    ``D[i, j] = dist(x_i, y_j)``. Squared euclidean uses one GEMM,
    ``‖x‖² + ‖y‖² − 2xyᵀ``, clamped at 0; the rows are first shifted by the (detached) mean of
    ``x``, which leaves distances and gradients unchanged but avoids the cancellation that
    large offsets cause. When ``y`` is omitted, ``y = x`` and the diagonal is exactly 0.

    Args:
        x: (N, D) floating tensor.
        y: (M, D) floating tensor, or None for ``x`` itself.
        metric: ``"sqeuclidean"`` (default), ``"euclidean"`` or ``"cosine"``.

    Returns:
        (N, M) tensor in the compute dtype (float32 for float16/bfloat16 input).

    Example:
        >>> x = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
        >>> pairwise_distances(x, metric="euclidean")
        tensor([[0., 5.],
                [5., 0.]])
    """
    check_choice(metric, "metric", METRICS)
    x = check_embeddings(x, "x")
    same = y is None
    y = x if y is None else check_embeddings(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must have the same embedding dimension; got {x.shape[1]} and {y.shape[1]}"
        )
    dtype = compute_dtype(x, y)
    x, y = x.to(dtype), y.to(dtype)
    if metric == "cosine":
        xn = torch.nn.functional.normalize(x, dim=1, eps=_COSINE_EPS)
        yn = xn if same else torch.nn.functional.normalize(y, dim=1, eps=_COSINE_EPS)
        dist = (1 - xn @ yn.T).clamp_min(0)
        if same:
            dist = _zero_diagonal_of_nonzero_rows(dist, x)
        return dist
    squared = _squared_euclidean(x, None if same else y)
    return squared if metric == "sqeuclidean" else safe_sqrt(squared)


def _squared_euclidean(x: Tensor, y: Tensor | None) -> Tensor:
    center = x.detach().mean(dim=0, keepdim=True) if x.shape[0] else 0.0
    xc = x - center
    yc = xc if y is None else y - center
    x_sq = (xc * xc).sum(dim=1)
    y_sq = x_sq if y is None else (yc * yc).sum(dim=1)
    squared = torch.addmm(x_sq[:, None] + y_sq[None, :], xc, yc.T, alpha=-2).clamp_min(0)
    if y is None:
        squared = squared * (1 - torch.eye(len(x), dtype=x.dtype, device=x.device))
    return squared


def _zero_diagonal_of_nonzero_rows(dist: Tensor, x: Tensor) -> Tensor:
    # A zero vector has cosine distance 1 to everything, itself included (cos is defined as 0).
    nonzero = x.detach().norm(dim=1) > 0
    keep = 1 - torch.diag_embed(nonzero.to(dist.dtype))
    return dist * keep


def distance(x: Tensor, y: Tensor, metric: Metric = "sqeuclidean") -> Tensor:
    """Row-wise distance ``dist(x_i, y_i)`` between two (N, D) tensors, computed directly.

    Returns:
        (N,) tensor in the compute dtype.

    Example:
        >>> distance(torch.tensor([[1.0, 2, 3]]), torch.tensor([[1.1, 2, 3.3]]), "euclidean")
        tensor([0.3162])
    """
    check_choice(metric, "metric", METRICS)
    x = check_embeddings(x, "x")
    y = check_embeddings(y, "y")
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same shape; got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    dtype = compute_dtype(x, y)
    return row_distance(x.to(dtype), y.to(dtype), metric)


def row_distance(x: Tensor, y: Tensor, metric: str) -> Tensor:
    """:func:`distance` without validation or dtype handling (for already-checked inputs)."""
    if metric == "cosine":
        xn = torch.nn.functional.normalize(x, dim=1, eps=_COSINE_EPS)
        yn = torch.nn.functional.normalize(y, dim=1, eps=_COSINE_EPS)
        return (1 - (xn * yn).sum(dim=1)).clamp_min(0)
    diff = x - y
    squared = (diff * diff).sum(dim=1)
    return squared if metric == "sqeuclidean" else safe_sqrt(squared)
