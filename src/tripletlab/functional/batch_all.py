"""Batch-all triplet loss: every valid (anchor, positive, negative) of the batch, exactly.

    L = reduce over valid (a, p, n) of  h(D(a, p) − D(a, n) + m),

h the hinge ``[x]₊`` or its smoothing ``μ·softplus(x/μ)``. No B×B×B tensor and no list of
triplets is ever built.

Hinge, O(B² log K) time and O(B²) memory (threshold bucketing): per anchor sort its K
thresholds t_i = d_ap_i + m. For every (a, n), ``searchsorted`` gives r = #{t_i ≤ d_an}; the
negative is active for the w = K_a − r larger thresholds. With c_j the number of negatives
active for the j-th threshold (a per-anchor histogram of w, cumulated),

    Σ_n Σ_i [t_i − d_an]₊ = Σ_j c_j·t_j − Σ_n w(a, n)·d_an,

and the gradient with respect to the distance matrix is −w(a, n) at (a, n) and c_j at the
j-th positive — written directly by a custom autograd Function (autograd through sort and
gather was measured 10× slower than the distance-matrix floor). w is stored in one byte per
(a, n) pair for the backward pass.

Smoothed (μ > 0) has no closed form per bucket: every positive slot is a (B, M) elementwise
pass, O(B²K) time, processed in row chunks so the temporaries stay within ``memory_budget``.

Reference: Hermans, Beyer & Leibe 2017, "In Defense of the Triplet Loss for Person
Re-Identification" (batch-all); Schroff et al. 2015, "FaceNet" (the triplet loss).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from tripletlab.functional._batch_all_smooth import _BatchAllSmooth, chain_rule_of_sqrt_
from tripletlab.functional._batch_input import (
    DEFAULT_MEMORY_BUDGET,
    BatchInput,
    check_batch_arguments,
    empty_batch_terms,
    prepare_batch,
    row_chunks,
)
from tripletlab.functional._compile import eager_under_compile
from tripletlab.functional._dense_pairs import dense_batch_all_terms, pair_rows
from tripletlab.functional._dense_small import reduce_dense
from tripletlab.functional._self_distance_backward import self_distance_backward
from tripletlab.functional._validation import check_scaled_result
from tripletlab.functional.reductions import REDUCTIONS, reduce_total
from tripletlab.functional.triplet_types import TripletStats, batch_stats


@eager_under_compile
def batch_all_triplet_loss(
    embeddings: Tensor,
    labels: Tensor,
    margin: float = 0.2,
    metric: str = "sqeuclidean",
    smoothing: float | None = None,
    reduction: str = "mean_active",
    ref_embeddings: Tensor | None = None,
    ref_labels: Tensor | None = None,
    return_stats: bool = False,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> Tensor | tuple[Tensor, TripletStats]:
    """Triplet loss over every valid triplet of the batch (batch-all), exact.

    ``h(d_ap − d_an + m)`` summed over all (a, p, n) with label(p) = label(a), p ≠ a and
    label(n) ≠ label(a), then reduced.

    Args:
        embeddings: (B, D) floating tensor (float16/bfloat16 are computed in float32).
        labels: (B,) integer labels.
        margin: m ≥ 0.
        metric: ``"sqeuclidean"`` (default, FaceNet), ``"euclidean"`` or ``"cosine"``.
        smoothing: None or 0 for the hinge; μ > 0 for ``μ·softplus(x/μ)``.
        reduction: ``"mean_active"`` (default, PML's AvgNonZeroReducer: mean over triplets
            with loss > 0), ``"mean"`` (over all valid triplets), ``"sum"``, or ``"none"``
            (a (B,) tensor: each anchor's sum over its triplets).
        ref_embeddings, ref_labels: optional (M, D) / (M,) reference set; anchors come from
            ``embeddings``, positives and negatives from the reference set (no self-exclusion).
        return_stats: also return a :class:`~tripletlab.functional.TripletStats`.
        memory_budget: bytes the temporaries may take at once (row chunks); the result does
            not depend on it.

    Returns:
        The loss (0-dim, or (B,) for ``"none"``) in the compute dtype; with
        ``return_stats=True`` a tuple ``(loss, stats)``. No valid or no active triplet gives
        exactly 0 with zero gradients (still attached to the graph), never NaN.

    Example:
        >>> x = torch.tensor([[0.0], [1.0], [2.0], [3.0]], requires_grad=True)
        >>> loss = batch_all_triplet_loss(x, torch.tensor([0, 0, 1, 1]), margin=4.0)
        >>> loss.backward()
        >>> round(loss.item(), 4)  # six active triplets, 12 in all
        2.0
    """
    margin, smoothing = check_batch_arguments(margin, metric, smoothing, reduction, REDUCTIONS)
    pairs = (
        pair_rows(embeddings, labels, metric)
        if _dense_applies(ref_embeddings, return_stats)
        else None
    )
    if pairs is not None:
        unit = pairs.rows.unit
        loss, num_active, num_triplets = dense_batch_all_terms(
            pairs, metric, margin * unit, smoothing and smoothing * unit, reduction == "none"
        )
        return reduce_dense(pairs.rows, loss, num_triplets, num_active, reduction)
    # the hinge compares d_an with d_ap + m only (its statistics with d_ap too); the smoothed
    # loss decides nothing: only those comparisons need exact distances
    offsets = (0.0, margin) if return_stats else () if smoothing else (margin,)
    # the hinge of a batch against itself is differentiated by row blocks from the rows
    # (no differentiable matrix); otherwise, euclidean: the Functions take the distances and
    # apply the chain rule to the squares themselves, so the roots replace the squares in
    # place (one B×M matrix less)
    by_blocks = ref_embeddings is None and smoothing is None
    batch = prepare_batch(
        embeddings,
        labels,
        metric,
        ref_embeddings,
        ref_labels,
        differentiable=not by_blocks,
        margin=margin,
        offsets=offsets,
        roots_in_place=True,
    )
    # distances are in units scaled by batch.unit (overflow protection): so are m and μ
    scaled_margin = margin * batch.unit
    # for the euclidean metric the graph holds the squared distances (the chain rule is
    # applied in the Function's own gradient buffer: the memory of the squared form)
    values = None if batch.graph is batch.distances else batch.distances
    if batch.k == 0 or batch.num_columns == 0:
        per_anchor, active = empty_batch_terms(batch)
    elif by_blocks:
        per_anchor, active = _SelfBatchAllHinge.apply(
            batch.embeddings, batch, scaled_margin, memory_budget
        )
    elif smoothing is None:
        per_anchor, active = _BatchAllHinge.apply(
            batch.graph,
            values,
            batch.positives,
            batch.positive_mask,
            batch,
            scaled_margin,
            memory_budget,
        )
    else:
        per_anchor, active = _BatchAllSmooth.apply(
            batch.graph,
            values,
            batch.positives,
            batch.positive_mask,
            batch,
            scaled_margin,
            smoothing * batch.unit,
            memory_budget,
        )
    if batch.unit != 1.0:
        per_anchor = check_scaled_result(per_anchor / batch.unit, batch.unit, "the loss")
    num_triplets = (batch.num_positives * batch.num_negatives).sum()
    num_active = active.sum()
    if reduction == "none":
        loss = per_anchor
    else:
        loss = reduce_total(per_anchor.sum(), num_triplets, num_active, reduction)
    if not return_stats:
        return loss
    return loss, batch_stats(batch, scaled_margin, num_active, num_triplets, memory_budget)


def _dense_applies(ref_embeddings: Tensor | None, return_stats: bool) -> bool:
    """The dense small-batch form covers a batch against itself, without statistics."""
    return ref_embeddings is None and not return_stats


def _sorted_thresholds(batch: BatchInput, d: Tensor, margin: float) -> tuple[Tensor, Tensor]:
    """Per anchor, its thresholds d_ap + m ascending (padding +inf) and their slot order."""
    inf = torch.tensor(math.inf, dtype=d.dtype, device=d.device)
    thresholds = torch.where(batch.positive_mask, d.gather(1, batch.positives) + margin, inf)
    return thresholds.sort(dim=1)


def _hinge_sums(
    batch: BatchInput, d: Tensor, margin: float, memory_budget: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(per-anchor sums, per-anchor active counts, w (B, M), counts (B, K)) of the hinge."""
    k = batch.k
    weight_dtype = torch.uint8 if k < 255 else torch.int32
    weights = torch.empty(d.shape, dtype=weight_dtype, device=d.device)
    if d.shape[0] * k * d.shape[1] <= _BROADCAST_MAX_ELEMENTS:
        counts, negative_part = _hinge_terms_by_broadcast(batch, d, margin, weights)
    elif k <= _COMPARE_MAX_K:
        counts, negative_part = _hinge_terms_by_comparison(batch, d, margin, weights, memory_budget)
    else:
        counts, negative_part = _hinge_terms_by_search(batch, d, margin, weights, memory_budget)
    thresholds = torch.where(batch.positive_mask, d.gather(1, batch.positives) + margin, 0)
    per_anchor = (thresholds * counts.to(d.dtype)).sum(1) - negative_part
    per_anchor = per_anchor.clamp_min(0)  # a sum of hinges; clamps rounding only
    return per_anchor, counts.sum(1), weights, counts


class _SelfBatchAllHinge(torch.autograd.Function):
    """The hinge batch-all of a batch against itself, differentiated by row blocks.

    Takes the rows x and the prepared (non-differentiable) batch; its backward builds
    ∂L/∂D block by block (−w·g at the negatives, the counts·g at the positives, the root's
    chain rule for euclidean) and passes it through
    :func:`~tripletlab.functional._self_distance_backward.self_distance_backward`: no B×B
    gradient is ever held whole (the memory of the squared form for every metric).
    """

    @staticmethod
    def forward(ctx, x, batch, margin, memory_budget):  # type: ignore[override]
        d = batch.distances
        per_anchor, active, weights, counts = _hinge_sums(batch, d, margin, memory_budget)
        roots = d if batch.metric == "euclidean" else None
        ctx.save_for_backward(x, weights, counts, batch.positives, roots)
        ctx.metric, ctx.memory_budget = batch.metric, memory_budget
        ctx.mark_non_differentiable(active)
        return per_anchor, active

    @staticmethod
    def backward(ctx, grad_per_anchor, _grad_active):  # type: ignore[override]
        x, weights, counts, positives, roots = ctx.saved_tensors
        g = grad_per_anchor.to(x.dtype)

        def gradient_rows(rows: slice) -> Tensor:
            block = weights[rows].to(x.dtype).mul_(-g[rows, None])
            block.scatter_add_(1, positives[rows], counts[rows].to(x.dtype) * g[rows, None])
            if roots is not None:  # ∂D/∂S = 1/(2D), 0 where D = 0 (a finite subgradient)
                root = roots[rows]
                block.div_(root).mul_(0.5).masked_fill_(root == 0, 0)
            return block

        metric = "cosine" if ctx.metric == "cosine" else "sqeuclidean"
        grad = self_distance_backward(x, metric, gradient_rows, ctx.memory_budget)
        return grad, None, None, None


class _BatchAllHinge(torch.autograd.Function):
    """Per-anchor hinge batch-all sums from the distance matrix, with dL/dD written directly."""

    @staticmethod
    def forward(ctx, graph, values, positives, positive_mask, batch, margin, memory_budget):  # type: ignore[override]
        # values: the distances when ``graph`` holds their squares (euclidean), else None
        d = graph.detach() if values is None else values
        per_anchor, active, weights, counts = _hinge_sums(batch, d, margin, memory_budget)
        ctx.save_for_backward(weights, counts, positives, d if values is not None else None)
        ctx.memory_budget = memory_budget
        ctx.mark_non_differentiable(active)
        return per_anchor, active

    @staticmethod
    def backward(ctx, grad_per_anchor, _grad_active):  # type: ignore[override]
        weights, counts, positives, roots = ctx.saved_tensors
        n_anchor, n_col = weights.shape
        grad = torch.empty(weights.shape, dtype=grad_per_anchor.dtype, device=weights.device)
        scale = -grad_per_anchor[:, None]
        for rows in row_chunks(n_anchor, 8 * max(1, n_col), ctx.memory_budget):
            torch.mul(weights[rows], scale[rows], out=grad[rows])
        grad.scatter_add_(1, positives, counts.to(grad.dtype) * grad_per_anchor[:, None])
        if roots is not None:
            chain_rule_of_sqrt_(grad, roots, ctx.memory_budget)
        return grad, None, None, None, None, None, None


#: Up to this many positives per anchor, w is counted by K comparisons per (a, n) on
#: cache-sized row blocks (faster than a binary search on CPU); above, by ``searchsorted``.
_COMPARE_MAX_K = 32
#: From this many positive slots, the comparison path counts through a histogram of w.
_HISTOGRAM_MIN_K = 8
#: Elements of a row block processed at once by the comparison path (fits in L2 cache).
_BLOCK_ELEMENTS = 2**19


#: Up to this many (anchor, positive slot, column) comparisons, w and the counts come from
#: one (B, K, M) broadcast comparison: a handful of operator calls instead of a Python loop
#: over the K slots (measured: B = 32–64, 2× less time in the forward pass).
_BROADCAST_MAX_ELEMENTS = 2**18


def _hinge_terms_by_broadcast(
    batch: BatchInput, d: Tensor, margin: float, weights: Tensor
) -> tuple[Tensor, Tensor]:
    """:func:`_hinge_terms_by_comparison` by one (B, K, M) comparison (small batches)."""
    thresholds = torch.where(batch.positive_mask, d.gather(1, batch.positives) + margin, -math.inf)
    masked = batch.fill_excluded_(d.clone(), math.inf)  # non-negatives never below
    below = masked[:, None, :] < thresholds[:, :, None]
    w = below.sum(1)
    weights.copy_(w)
    return below.sum(2), (w.to(d.dtype) * d).sum(1)


def _hinge_terms_by_comparison(
    batch: BatchInput, d: Tensor, margin: float, weights: Tensor, memory_budget: int
) -> tuple[Tensor, Tensor]:
    """Fill ``weights`` with w(a, n) = #{i : d_an < t_i}; return (counts, Σ_n w·d_an).

    ``counts[a, i]`` is the number of negatives active for the anchor's i-th positive (its
    slot in ``batch.positives``). Non-negative columns are set to +inf before comparing, so
    they are never counted; padded slots have t = −inf.
    """
    n_anchor, n_col = d.shape
    k = batch.k
    inf = torch.tensor(math.inf, dtype=d.dtype, device=d.device)
    thresholds = torch.where(batch.positive_mask, d.gather(1, batch.positives) + margin, -inf)
    counts = torch.zeros((n_anchor, k), dtype=torch.long, device=d.device)
    # many slots: count through a histogram of w (two passes) rather than one sum per slot
    by_histogram = k >= _HISTOGRAM_MIN_K
    histogram = torch.zeros((n_anchor, k + 1), dtype=torch.long, device=d.device)
    negative_part = torch.empty(n_anchor, dtype=d.dtype, device=d.device)
    # cache-sized row blocks (smaller if the memory budget says so: ~14 bytes an element)
    step = max(1, min(_BLOCK_ELEMENTS, memory_budget // 14) // max(1, n_col))
    below = torch.empty((min(step, n_anchor), n_col), dtype=torch.bool, device=d.device)
    for start in range(0, n_anchor, step):
        rows = slice(start, min(n_anchor, start + step))
        block = d[rows]
        masked = batch.fill_excluded_(block.clone(), math.inf, rows)
        w = weights[rows]
        w.zero_()
        tmp = below[: block.shape[0]]
        for i in range(k):
            torch.lt(masked, thresholds[rows, i : i + 1], out=tmp)
            if not by_histogram:
                counts[rows, i] = tmp.sum(1, dtype=torch.int32)
            w.add_(tmp.view(torch.uint8))  # a view: no bool→uint8 conversion copy
        if by_histogram:
            index = w.long()
            histogram[rows].scatter_add_(1, index, torch.ones_like(index))
        negative_part[rows] = (w * block).sum(1)
    if by_histogram:
        counts = _counts_from_histogram(batch, thresholds, histogram)
    return counts, negative_part


def _counts_from_histogram(batch: BatchInput, thresholds: Tensor, histogram: Tensor) -> Tensor:
    """counts[a, i] = #{n : w ≥ K_a − rank_i}, rank_i the rank of t_i among the anchor's
    thresholds (ascending): the negatives below the j-th smallest threshold are exactly those
    with at least K_a − j thresholds above them (ties give equal counts)."""
    k = batch.k
    k_a = batch.num_positives
    padded = torch.where(batch.positive_mask, thresholds, math.inf)
    order = padded.argsort(dim=1, stable=True)
    slots = torch.arange(k, device=thresholds.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(1, order, slots)
    at_least = histogram.flip(1).cumsum(1).flip(1)  # at_least[v] = #{n : w ≥ v}
    need = (k_a[:, None] - rank).clamp(0, k)
    return torch.where(batch.positive_mask, at_least.gather(1, need), 0)


def _hinge_terms_by_search(
    batch: BatchInput, d: Tensor, margin: float, weights: Tensor, memory_budget: int
) -> tuple[Tensor, Tensor]:
    """As :func:`_hinge_terms_by_comparison`, by ``searchsorted`` in the sorted thresholds.

    r = #{t_i ≤ d_an} by binary search; w = K_a − r; the count of the j-th smallest
    threshold is #{n : w ≥ K_a − j}, read from a per-anchor histogram of w.
    """
    n_anchor, n_col = d.shape
    k = batch.k
    k_a = batch.num_positives
    thresholds, order = _sorted_thresholds(batch, d, margin)
    histogram = torch.zeros((n_anchor, k + 1), dtype=torch.long, device=d.device)
    negative_part = torch.zeros(n_anchor, dtype=d.dtype, device=d.device)
    for rows in row_chunks(n_anchor, 24 * max(1, n_col), memory_budget):
        block = d[rows]
        w = torch.searchsorted(thresholds[rows].contiguous(), block.contiguous(), right=True)
        w = torch.sub(k_a[rows, None], w, out=w).clamp_min_(0)
        batch.fill_excluded_(w, 0, rows)
        histogram[rows].scatter_add_(1, w, torch.ones_like(w))
        weights[rows] = w
        negative_part[rows] = (weights[rows] * block).sum(1)
    at_least = histogram.flip(1).cumsum(1).flip(1)  # at_least[v] = #{n : w ≥ v}
    slots = torch.arange(k, device=d.device)
    need = (k_a[:, None] - slots[None, :]).clamp(0, k)
    counts_sorted = torch.where(slots[None, :] < k_a[:, None], at_least.gather(1, need), 0)
    return torch.zeros_like(counts_sorted).scatter_(1, order, counts_sorted), negative_part
