"""Dense forms for small batches: a few whole-matrix operations instead of the index machinery.

Below a few hundred rows the positive index matrix, the row chunks, the bucketing and the
tie search cost more (in operator calls and Python time) than the B×B masks they avoid. The
losses take these forms for a batch against itself without statistics; the results are the
same numbers (tests/test_dense_small.py compares both paths).

This module holds what the dense forms share (the checked, overflow-scaled rows, the
reduction) and batch-hard's form. Batch-hard decides nothing on the matrix but which positive
and negative to take, and recomputes their distances directly, so exactly tied candidates
(whose direct distances are equal) give the same loss whichever is taken. Batch-all and
semi-hard compare distances (d_an < d_ap + m, d_an > d_ap): their pair forms
(:mod:`~tripletlab.functional._dense_pairs`, :mod:`~tripletlab.functional._dense_semi_hard`)
decide on a screened matrix (:mod:`~tripletlab.functional._screened_distances`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from tripletlab.functional._refined_distances import COSINE_EPS
from tripletlab.functional._validation import (
    check_embeddings,
    check_labels,
    check_scaled_result,
    compute_dtype,
    finite_max_abs,
    overflow_scale,
)
from tripletlab.functional.distances import METRIC_DEGREE
from tripletlab.functional.reductions import reduce_total
from tripletlab.functional.smoothing import smooth_hinge, smooth_hinge_derivative

#: Largest batch computed by the dense forms (B×B masks of a few hundred kB at most).
DENSE_MAX_BATCH = 256


@dataclass(frozen=True)
class SmallBatch:
    """Validated rows of a small batch against itself, scaled against overflow."""

    x: Tensor  # (B, D) compute dtype, multiplied by ``scale``
    labels: Tensor  # (B,) int64
    unit: float  # distances are in units scaled by this (margin and smoothing scale with it)
    scale: float  # the power of two the rows were multiplied by
    largest: float  # the largest |entry| of x (after scaling)


class ClassSizes:
    """The labels' largest class, counted on first use only (one small host sync).

    Shared by the decisions of one loss call, so that the count is taken at most once.
    """

    def __init__(self, labels: Tensor) -> None:
        self._labels = labels
        self._largest: int | None = None

    @property
    def largest(self) -> int:
        """The size of the most frequent label (0 for no labels)."""
        if self._largest is None:
            labels = self._labels
            self._largest = (
                int(torch.unique(labels, return_counts=True)[1].max()) if labels.numel() else 0
            )
        return self._largest


def small_batch_rows(
    embeddings: Tensor, labels: Tensor, metric: str, max_batch: int
) -> SmallBatch | None:
    """The checked, overflow-scaled rows when 2 ≤ B ≤ ``max_batch``; None otherwise."""
    embeddings, labels = checked_inputs(embeddings, labels)
    if not 2 <= embeddings.shape[0] <= max_batch:
        return None
    return scaled_rows(embeddings, labels, metric)


def checked_inputs(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Shapes and types checked (the values are read by :func:`scaled_rows`)."""
    embeddings = check_embeddings(embeddings, "embeddings", check_values=False)
    labels = check_labels(labels, embeddings.shape[0])
    return embeddings, labels if labels.dtype == torch.int64 else labels.long()


def scaled_rows(embeddings: Tensor, labels: Tensor, metric: str) -> SmallBatch:
    """The rows in the compute dtype, scaled against overflow (NaN/Inf refused here)."""
    dtype = compute_dtype(embeddings)
    largest = finite_max_abs(embeddings, "embeddings")
    scale = overflow_scale(largest, embeddings.shape[1], dtype)
    x = embeddings if embeddings.dtype == dtype else embeddings.to(dtype)
    if scale != 1.0:
        x = x * scale
    unit = scale ** METRIC_DEGREE[metric]
    return SmallBatch(x=x, labels=labels, unit=unit, scale=scale, largest=largest * scale)


def reduce_dense(
    rows: SmallBatch, sums: Tensor, num_terms: Tensor, num_active: Tensor, reduction: str
) -> Tensor:
    """The loss from per-anchor sums (B,) — or their total, unless ``reduction`` is
    ``"none"`` — in scaled units: back to the user's units, reduced."""
    if rows.unit != 1.0:
        sums = check_scaled_result(sums / rows.unit, rows.scale, "the loss")
    if reduction == "none":
        return sums
    return reduce_total(sums.sum() if sums.dim() else sums, num_terms, num_active, reduction)


def label_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """(B, B) bool masks: positives (same label, not itself) and negatives (other label)."""
    same = labels[:, None] == labels[None, :]
    return same.clone().fill_diagonal_(False), ~same


def dense_hardest_pairs(x: Tensor, labels: Tensor, metric: str) -> tuple[Tensor, Tensor, Tensor]:
    """(positive column, negative column, valid) per anchor from dense B×B masks.

    ``valid`` marks anchors with a positive and a negative; the columns are arbitrary (but
    in range) elsewhere. The distance matrix is computed without autograd. For ``"cosine"``
    ``x`` holds the unit rows (zero rows at 0).
    """
    with torch.no_grad():
        if metric == "cosine":
            scores = -(x @ x.T)  # 1 − cos, up to the constant: same order
        else:
            sq = (x * x).sum(1)
            scores = torch.addmm(sq[:, None] + sq[None, :], x, x.T, alpha=-2)
        positive, negative = label_masks(labels)
        hardest_positive = torch.where(positive, scores, -math.inf).argmax(1)
        hardest_negative = torch.where(negative, scores, math.inf).argmin(1)
        valid = positive.any(1) & negative.any(1)
    return hardest_positive, hardest_negative, valid


def dense_batch_hard_terms(
    rows: SmallBatch, metric: str, margin: float, smoothing: float | None, per_anchor: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """(per-anchor losses (B,) or their total, valid anchors, active anchors), scaled units:
    each anchor's hardest triplet, its two distances recomputed directly from the rows."""
    return _DenseBatchHard.apply(rows.x, rows.labels, metric, margin, smoothing, per_anchor)


class _DenseBatchHard(torch.autograd.Function):
    """Batch-hard from the rows in one Function: selection on the B×B matrix (no autograd),
    the 2B selected distances recomputed directly (as
    :func:`~tripletlab.functional.distances.row_distance`: the same numbers), and their
    gradient written directly.

    With Δ = x_a − x_s for the selected s ∈ {p, n} and w = ±g_a·h'(t) (+ for the positive):
    squared ∂d/∂x_a = 2Δ, euclidean Δ/d (0 at d = 0), and ∂d/∂x_s = −∂d/∂x_a. Cosine, on
    the unit rows u = x/max(‖x‖, ε): d = 1 − ⟨u_a, u_s⟩, ∂d/∂x_a = −(u_s − ⟨u_a, u_s⟩u_a)/‖x_a‖
    (−u_s/ε for a row of norm ≤ ε), and symmetrically for x_s.
    """

    @staticmethod
    def forward(ctx, x, labels, metric, margin, smoothing, per_anchor):  # type: ignore[override]
        n = x.shape[0]
        if metric == "cosine":
            norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
            rows = x / norm.clamp_min(COSINE_EPS)
            selecting = torch.where(norm > COSINE_EPS, rows, 0)  # zero rows: cos 0
        else:
            norm, rows = None, x
            selecting = x
        p, neg, valid = dense_hardest_pairs(selecting, labels, metric)
        # both pairs of every anchor in one pass (half the operator calls of two)
        selected = torch.cat([p, neg])
        others = rows.index_select(0, selected)
        if metric == "cosine":
            both = (1 - (torch.cat([rows, rows]) * others).sum(dim=1)).clamp_min(0)
        else:
            difference = torch.cat([x, x]) - others
            both = (difference * difference).sum(dim=1)
            if metric == "euclidean":
                both = both.sqrt()
        t = both[:n] - both[n:] + margin
        terms = torch.where(valid, smooth_hinge(t, smoothing), 0)
        slope = smooth_hinge_derivative(t, smoothing).mul_(valid)
        saved = (rows, others, norm) if metric == "cosine" else (difference, both, None)
        ctx.save_for_backward(selected, slope, *saved)
        ctx.metric = metric
        num_valid, num_active = valid.sum(), (terms > 0).sum()
        ctx.mark_non_differentiable(num_valid, num_active)
        return (terms if per_anchor else terms.sum()), num_valid, num_active

    @staticmethod
    def backward(ctx, grad_loss, _grad_valid, _grad_active):  # type: ignore[override]
        selected, slope, first, second, norm = ctx.saved_tensors
        weight = slope * grad_loss  # (B,): g_a·h'(t)
        weight = torch.cat([weight, -weight])  # + toward the positive, − the negative
        n = weight.shape[0] // 2
        if ctx.metric == "cosine":
            # ∂L/∂u first (d = 1 − ⟨u_a, u_s⟩: −w·u_s for the anchor, −w·u_a for s), then one
            # projection per row onto the tangent of u, over its norm
            rows, others = first, second
            toward_anchor = others * -weight[:, None]
            grad_unit = toward_anchor[:n] + toward_anchor[n:]
            grad_unit.index_add_(0, selected, torch.cat([rows, rows]) * -weight[:, None])
            return _unit_rows_backward(grad_unit, rows, norm), None, None, None, None, None
        difference, both = first, second
        # euclidean: Δ/d, 0 at d = 0; squared: 2Δ
        euclidean = ctx.metric == "euclidean"
        scale = torch.where(both > 0, weight / both, 0) if euclidean else 2 * weight
        toward_anchor = difference * scale[:, None]
        grad = toward_anchor[:n] + toward_anchor[n:]
        return grad.index_add_(0, selected, -toward_anchor), None, None, None, None, None


def _unit_rows_backward(grad_unit: Tensor, unit: Tensor, norm: Tensor) -> Tensor:
    """∂L/∂x from ∂L/∂u for u = x/max(‖x‖, ε): the part of ∂L/∂u tangent to u over ‖x‖, or
    ∂L/∂u/ε where ‖x‖ ≤ ε (u = x/ε there)."""
    radial = (grad_unit * unit).sum(1, keepdim=True)
    tangent = (grad_unit - radial * unit) / norm.clamp_min(COSINE_EPS)
    return torch.where(norm > COSINE_EPS, tangent, grad_unit / COSINE_EPS)
