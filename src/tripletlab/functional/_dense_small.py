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
from tripletlab.functional.distances import METRIC_DEGREE, row_distance
from tripletlab.functional.reductions import reduce_total

#: Largest batch computed by the dense batch-hard form (B×B masks of a few hundred kB at most).
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
    return embeddings, check_labels(labels, embeddings.shape[0]).long()


def scaled_rows(embeddings: Tensor, labels: Tensor, metric: str) -> SmallBatch:
    """The rows in the compute dtype, scaled against overflow (NaN/Inf refused here)."""
    dtype = compute_dtype(embeddings)
    largest = finite_max_abs(embeddings, "embeddings")
    scale = overflow_scale(largest, embeddings.shape[1], dtype)
    x = embeddings.to(dtype) if scale == 1.0 else embeddings.to(dtype) * scale
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


def dense_batch_hard_terms(x: Tensor, labels: Tensor, metric: str) -> tuple[Tensor, Tensor, Tensor]:
    """(d_ap, d_an, valid) of each anchor's hardest triplet, distances recomputed directly.

    Cosine: the rows are normalised once, differentiably (as
    :func:`~tripletlab.functional.distances.row_distance` does each row: the same numbers),
    and both the selection and the recomputed distances read them — one normalisation and
    its backward instead of five.
    """
    if metric == "cosine":
        norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
        x = x / norm.clamp_min(COSINE_EPS)
        with torch.no_grad():
            selecting = torch.where(norm > COSINE_EPS, x, 0)  # zero rows: cos 0 (unit_rows)
    else:
        selecting = x
    p, n, valid = dense_hardest_pairs(selecting, labels, metric)
    # both pairs of every anchor in one pass (half the operator calls of two); index_select:
    # its backward is index_add_, cheaper than advanced indexing's index_put_
    anchors, selected = torch.cat([x, x]), x.index_select(0, torch.cat([p, n]))
    if metric == "cosine":
        both = (1 - (anchors * selected).sum(dim=1)).clamp_min(0)
    else:
        both = row_distance(anchors, selected, metric)
    d_ap, d_an = both.split(x.shape[0])
    return d_ap, d_an, valid
