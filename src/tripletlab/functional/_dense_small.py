"""Dense forms for small batches: a few whole-matrix operations instead of the index machinery.

Below a few hundred rows the positive index matrix, the row chunks, the bucketing and the
tie search cost more (in operator calls and Python time) than the B×B masks — or, for
batch-all and semi-hard below :data:`DENSE_CUBE_MAX_BATCH`, the (B, B, B) triplet tensors —
they avoid. The losses take these forms for a batch against itself without statistics; the
results are the same numbers (tests/test_dense_small.py compares both paths).

Exactness: batch-hard decides nothing on the matrix but which positive and negative to take,
and recomputes their distances directly, so exactly tied candidates (whose direct distances
are equal) give the same loss whichever is taken. Batch-all and semi-hard compare distances
(d_an < d_ap + m, d_an > d_ap): they run on a matrix computed entirely by direct differences
(:func:`~tripletlab.functional._refined_distances.direct_matrix_is_cheaper`), so every
comparison is exact, and are only used where that matrix is the cheaper one (B ≤ :data:`DENSE_CUBE_MAX_BATCH`
for batch-all; up to :data:`DENSE_MAX_BATCH` for semi-hard, whose dense form is O(B² log B)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from tripletlab.functional._refined_distances import (
    COSINE_EPS,
    direct_distances,
    direct_matrix_is_cheaper,
)
from tripletlab.functional._validation import (
    check_embeddings,
    check_labels,
    check_scaled_result,
    compute_dtype,
    finite_max_abs,
    overflow_scale,
)
from tripletlab.functional.distances import METRIC_DEGREE, row_distance, safe_sqrt
from tripletlab.functional.reductions import reduce_total
from tripletlab.functional.smoothing import smooth_hinge

#: Largest batch computed by the dense batch-hard form (B×B masks of a few hundred kB at most).
DENSE_MAX_BATCH = 256
#: Largest batch computed by the dense (B, B, B) batch-all form: a few B³ temporaries (1 MB
#: each at B = 64). Measured on CPU (1 thread, D = 128, forward+backward): 0.6–0.8× the
#: bucketed path's time at B = 32–64.
DENSE_CUBE_MAX_BATCH = 64


@dataclass(frozen=True)
class SmallBatch:
    """Validated rows of a small batch against itself, scaled against overflow."""

    x: Tensor  # (B, D) compute dtype, multiplied by ``scale``
    labels: Tensor  # (B,) int64
    unit: float  # distances are in units scaled by this (margin and smoothing scale with it)
    scale: float  # the power of two the rows were multiplied by


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
    embeddings, labels = _checked(embeddings, labels)
    if not 2 <= embeddings.shape[0] <= max_batch:
        return None
    return _scaled_rows(embeddings, labels, metric)


def direct_rows(
    embeddings: Tensor,
    labels: Tensor,
    metric: str,
    max_batch: int,
    classes: ClassSizes | None = None,
) -> SmallBatch | None:
    """:func:`small_batch_rows` where the exact direct matrix is the cheaper one; else None.

    Decided from the shapes (and, for larger batches, the largest class) before the rows are
    read: a declined batch costs no host synchronisation for its scale.
    """
    embeddings, labels = _checked(embeddings, labels)
    if not 2 <= embeddings.shape[0] <= max_batch:
        return None
    cheaper = direct_matrix_is_cheaper(embeddings, None) or direct_matrix_is_cheaper(
        # larger: direct still wins with many positives a row (K = the largest class − 1)
        embeddings,
        None,
        (classes or ClassSizes(labels)).largest - 1,
    )
    return _scaled_rows(embeddings, labels, metric) if cheaper else None


def _checked(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Shapes and types checked (the values are read by :func:`_scaled_rows`)."""
    embeddings = check_embeddings(embeddings, "embeddings", check_values=False)
    return embeddings, check_labels(labels, embeddings.shape[0]).long()


def _scaled_rows(embeddings: Tensor, labels: Tensor, metric: str) -> SmallBatch:
    """The rows in the compute dtype, scaled against overflow (NaN/Inf refused here)."""
    dtype = compute_dtype(embeddings)
    scale = overflow_scale(finite_max_abs(embeddings, "embeddings"), embeddings.shape[1], dtype)
    x = embeddings.to(dtype) if scale == 1.0 else embeddings.to(dtype) * scale
    return SmallBatch(x=x, labels=labels, unit=scale ** METRIC_DEGREE[metric], scale=scale)


def reduce_dense(
    rows: SmallBatch, per_anchor: Tensor, num_terms: Tensor, num_active: Tensor, reduction: str
) -> Tensor:
    """The loss from per-anchor sums in scaled units: back to the user's units, reduced."""
    if rows.unit != 1.0:
        per_anchor = check_scaled_result(per_anchor / rows.unit, rows.scale, "the loss")
    if reduction == "none":
        return per_anchor
    return reduce_total(per_anchor.sum(), num_terms, num_active, reduction)


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


class _DenseBatchAll(torch.autograd.Function):
    """Per-anchor batch-all sums over the (B, B, B) triplet tensor, dL/dD written directly.

    t[a, p, n] = d_ap − d_an + m with d_ap = −inf off the positives and d_an = +inf off the
    negatives, so invalid triplets have h(t) = h'(t) = 0 without a (B, B, B) mask. Then
    ∂L/∂d_ap = g_a Σ_n h'(t) and ∂L/∂d_an = −g_a Σ_p h'(t): two reductions of the slope
    tensor are all the backward keeps.
    """

    @staticmethod
    def forward(ctx, graph, roots, positive, negative, margin, smoothing):  # type: ignore[override]
        # roots: the distances when ``graph`` holds their squares (euclidean), else None
        d = graph.detach() if roots is None else roots
        d_ap = torch.where(positive, d, -math.inf)
        d_an = torch.where(negative, d, math.inf)
        t = (d_ap[:, :, None] - d_an[:, None, :]).add_(margin)
        # every B³ temporary is written in place where it can: a fresh one costs its page
        # faults on each call (measured: 0.7 ms for a new 1 MB slope tensor at B = 64)
        if smoothing:
            terms = torch.nn.functional.softplus(t, beta=1.0 / smoothing, threshold=20.0)
            per_anchor = terms.sum((1, 2))
            active = terms.sign_().sum(2)
            slope = t.div_(smoothing).sigmoid_()
        else:
            terms = t.clamp_min_(0)
            per_anchor = terms.sum((1, 2))
            slope = terms.sign_()  # 1 where active, 0 elsewhere (terms ≥ 0)
            active = None
        toward_positive = slope.sum(2)
        ctx.save_for_backward(toward_positive, slope.sum(1), roots)
        counts = (toward_positive if active is None else active).sum(1).round().long()
        ctx.mark_non_differentiable(counts)
        return per_anchor, counts

    @staticmethod
    def backward(ctx, grad_per_anchor, _grad_active):  # type: ignore[override]
        toward_positive, toward_negative, roots = ctx.saved_tensors
        grad = (toward_positive - toward_negative) * grad_per_anchor[:, None]
        if roots is not None:  # ∂D/∂S = 1/(2D), 0 where D = 0 (a finite subgradient)
            grad = torch.where(roots > 0, grad / (2 * roots), 0)
        return grad, None, None, None, None, None


def cube_rows(embeddings: Tensor, labels: Tensor, metric: str) -> SmallBatch | None:
    """:func:`direct_rows` for the (B, B, B) batch-all form."""
    return direct_rows(embeddings, labels, metric, DENSE_CUBE_MAX_BATCH)


def dense_batch_all_terms(
    rows: SmallBatch, metric: str, margin: float, smoothing: float | None
) -> tuple[Tensor, Tensor, Tensor]:
    """(per-anchor sums, per-anchor active counts, number of valid triplets), scaled units."""
    graph, values = direct_distances(rows.x, metric)
    positive, negative = label_masks(rows.labels)
    roots = None if graph is values else values
    per_anchor, active = _DenseBatchAll.apply(graph, roots, positive, negative, margin, smoothing)
    num_triplets = (positive.sum(1) * negative.sum(1)).sum()
    return per_anchor, active, num_triplets


def dense_semi_hard_terms(
    rows: SmallBatch, metric: str, margin: float, smoothing: float | None, fallback: str
) -> tuple[Tensor, Tensor]:
    """((B, B) per-pair losses, (B, B) valid pairs) of FaceNet's semi-hard loss, dense form.

    Pair (a, p) takes n* = argmin {d_an : n negative, d_an > d_ap}, else the fallback
    (the anchor's closest or farthest negative; ``"skip"`` drops the pair). O(B² log B): one
    sort of each row's negatives and a binary search per pair (as sentence-transformers).
    """
    graph, values = direct_distances(rows.x, metric)
    positive, negative = label_masks(rows.labels)
    with torch.no_grad():
        d = values.detach()
        d_neg = torch.where(negative, d, math.inf)
        # each row's negatives ascending (non-negatives last, at +inf; ties by column): the
        # first one beyond d_ap is the semi-hard negative of (a, p)
        ascending, order = d_neg.sort(dim=1, stable=True)
        first = torch.searchsorted(ascending, d, right=True)
        found = first < negative.sum(1, keepdim=True)
        column = order.gather(1, first.clamp_max_(d.shape[1] - 1))
        if fallback == "easiest":
            other = torch.where(negative, d, -math.inf).argmax(1)
        else:
            other = d_neg.argmin(1)
        column = torch.where(found, column, other[:, None])
        pair_valid = positive & negative.any(1)[:, None]
        if fallback == "skip":
            pair_valid = pair_valid & found
    differentiable = safe_sqrt(graph) if graph is not values else graph
    d_ap, d_an = differentiable, differentiable.gather(1, column)
    terms = torch.where(pair_valid, smooth_hinge(d_ap - d_an + margin, smoothing), 0)
    return terms, pair_valid
