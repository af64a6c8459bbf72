"""Semi-hard triplet loss (FaceNet): per anchor–positive pair, the closest farther negative.

For every valid pair (a, p) the negative is n* = argmin { D(a, n) : D(a, n) > D(a, p) } — the
closest negative that is still farther than the positive — and the pair's loss is
h(d_ap − d_an* + m). When no negative is farther than the positive, ``fallback`` decides:
``"hardest"`` (the closest negative of the anchor), ``"easiest"`` (the farthest one, as
TF-Addons' ``triplet_semihard_loss``), or ``"skip"`` (the pair is left out).

O(B² log K) time and O(B²) memory by bucketing: per anchor sort its K values d_ap; one
``searchsorted`` puts every negative in the bucket r = #{d_ap < d_an}; a per-bucket minimum
(``scatter_reduce`` amin) followed by a suffix minimum over buckets gives, for the i-th
smallest d_ap, the closest negative among buckets r > i. The matrix is computed without
autograd and the B·K selected distances are recomputed from the embeddings: the backward
pass is O(B·K·D).

This is FaceNet's definition (one negative per pair). pytorch-metric-learning's
``TripletMarginMiner("semihard")`` differs: it keeps *every* triplet with
0 < d_an − d_ap ≤ m.

Reference: Schroff, Kalenichenko & Philbin 2015, "FaceNet: A Unified Embedding for Face
Recognition and Clustering", §3.2.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from tripletlab.functional._batch_input import (
    DEFAULT_MEMORY_BUDGET,
    BatchInput,
    check_batch_arguments,
    empty_batch_terms,
    prepare_batch,
)
from tripletlab.functional._compile import eager_under_compile
from tripletlab.functional._dense_semi_hard import dense_semi_hard_terms, semi_hard_pair_rows
from tripletlab.functional._dense_small import ClassSizes, reduce_dense
from tripletlab.functional._validation import check_choice, check_scaled_result
from tripletlab.functional.batch_hard import easiest_negative_index
from tripletlab.functional.distances import safe_sqrt
from tripletlab.functional.reductions import REDUCTIONS, reduce_total
from tripletlab.functional.smoothing import smooth_hinge
from tripletlab.functional.triplet_types import TripletStats, batch_stats

FALLBACKS: tuple[str, ...] = ("hardest", "easiest", "skip")


@eager_under_compile
def batch_semi_hard_triplet_loss(
    embeddings: Tensor,
    labels: Tensor,
    margin: float = 0.2,
    metric: str = "sqeuclidean",
    smoothing: float | None = None,
    fallback: str = "hardest",
    reduction: str = "mean",
    ref_embeddings: Tensor | None = None,
    ref_labels: Tensor | None = None,
    return_stats: bool = False,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> Tensor | tuple[Tensor, TripletStats]:
    """FaceNet's semi-hard triplet loss over every anchor–positive pair of the batch.

    Args:
        embeddings: (B, D) floating tensor (float16/bfloat16 are computed in float32).
        labels: (B,) integer labels.
        margin: m ≥ 0.
        metric: ``"sqeuclidean"`` (default, FaceNet), ``"euclidean"`` or ``"cosine"``.
        smoothing: None or 0 for the hinge; μ > 0 for ``μ·softplus(x/μ)``.
        fallback: negative for pairs without a semi-hard one: ``"hardest"`` (default),
            ``"easiest"`` (TF-Addons) or ``"skip"``.
        reduction: ``"mean"`` (default, over the pairs that have a negative, as TF-Addons),
            ``"mean_active"`` (pairs with loss > 0), ``"sum"``, or ``"none"`` ((B,): each
            anchor's sum over its pairs).
        ref_embeddings, ref_labels: optional (M, D) / (M,) reference set.
        return_stats: also return a :class:`~tripletlab.functional.TripletStats`
            (``num_active`` counts pairs).
        memory_budget: bytes the temporaries may take at once; the result does not depend on it.

    Returns:
        The loss (0-dim, or (B,) for ``"none"``), or ``(loss, stats)``; exactly 0 with zero
        gradients when there is no valid pair.

    Example:
        >>> x = torch.tensor([[0.0], [1.0], [2.0], [3.0]], requires_grad=True)
        >>> loss = batch_semi_hard_triplet_loss(x, torch.tensor([0, 0, 1, 1]), margin=4.0)
        >>> loss.backward()
        >>> round(loss.item(), 4)  # every pair: 1 − 4 + 4
        1.0
    """
    margin, smoothing = check_batch_arguments(margin, metric, smoothing, reduction, REDUCTIONS)
    check_choice(fallback, "fallback", FALLBACKS)
    dense = ref_embeddings is None and not return_stats
    pairs = semi_hard_pair_rows(embeddings, labels, metric) if dense else None
    if pairs is not None:
        unit = pairs.rows.unit
        loss, num_pairs, num_active = dense_semi_hard_terms(
            pairs,
            metric,
            margin * unit,
            smoothing and smoothing * unit,
            fallback,
            per_anchor=reduction == "none",
        )
        return reduce_dense(pairs.rows, loss, num_pairs, num_active, reduction)
    classes = ClassSizes(labels)  # counted at most once
    through_matrix = _gradient_through_matrix(embeddings, labels, ref_embeddings, classes)
    batch = prepare_batch(
        embeddings,
        labels,
        metric,
        ref_embeddings,
        ref_labels,
        differentiable=through_matrix,
        margin=margin,
        # the selection compares d_an with d_ap ("farther than the positive"); the hinge is on
        # the recomputed distances; the statistics compare with d_ap + m too
        offsets=(0.0, margin) if return_stats else (0.0,),
    )
    margin, smoothing = batch.unit * margin, smoothing and batch.unit * smoothing
    if batch.k == 0 or batch.num_columns == 0:
        per_anchor, _ = empty_batch_terms(batch)
        pair_valid = batch.positive_mask
        values = per_anchor[:, None]
    else:
        columns, found, hardest = semi_hard_negative_index(batch, memory_budget)
        other = easiest_negative_index(batch) if fallback == "easiest" else hardest
        columns = torch.where(found, columns, other[:, None])
        pair_valid = batch.positive_mask & (batch.num_negatives > 0)[:, None]
        if fallback == "skip":
            pair_valid = pair_valid & found
        d_ap, d_an = _selected_distances(batch, columns, through_matrix)
        values = torch.where(pair_valid, smooth_hinge(d_ap - d_an + margin, smoothing), 0)
        per_anchor = values.sum(1)
        if batch.unit != 1.0:  # distances in scaled units (overflow protection)
            per_anchor = check_scaled_result(per_anchor / batch.unit, batch.unit, "the loss")
            values = values / batch.unit
    num_terms = pair_valid.sum()
    num_active = ((values.detach() > 0) & pair_valid).sum()
    if reduction == "none":
        loss = per_anchor
    else:
        loss = reduce_total(per_anchor.sum(), num_terms, num_active, reduction)
    if not return_stats:
        return loss
    return loss, batch_stats(batch, margin, num_active, num_terms, memory_budget)


#: Recomputing a selected distance from its two rows costs about this many times more per
#: distance than a distance-matrix entry's share of the matrix backward (two B×M×D GEMMs),
#: measured on CPU (1–2 threads, D = 128): gathers, a subtraction and a reduction over D per
#: pair against fused GEMM work. So the B·K selected pairs go through the matrix when
#: B·K·ratio > B·M, i.e. M < ratio·K.
_RECOMPUTE_COST_RATIO = 64


def _gradient_through_matrix(
    embeddings: Tensor, labels: Tensor, ref_embeddings: Tensor | None, classes: ClassSizes
) -> bool:
    """Whether the B·K selected distances are cheaper to differentiate through the matrix.

    K is estimated from the labels' largest class (its exact value needs the positive index,
    which is built later); the result does not depend on the choice, only the speed.
    """
    n_col = embeddings.shape[0] if ref_embeddings is None else ref_embeddings.shape[0]
    if embeddings.shape[0] == 0 or n_col == 0 or labels.numel() == 0:
        return False
    return n_col < _RECOMPUTE_COST_RATIO * classes.largest


def _selected_distances(
    batch: BatchInput, columns: Tensor, through_matrix: bool
) -> tuple[Tensor, Tensor]:
    """Differentiable (B, K) d_ap and d_an at the positive slots and their chosen negatives.

    Either gathered from the differentiable matrix (its backward: two GEMMs), or recomputed
    from the rows (O(B·K·D), no B×M gradient): the same values up to the GEMM rounding
    (refined entries are the direct ones).
    """
    if through_matrix:
        graph = batch.graph if batch.graph is not None else batch.distances
        d_ap, d_an = graph.gather(1, batch.positives), graph.gather(1, columns)
        if batch.metric == "euclidean" and graph is not batch.distances:  # squares
            d_ap, d_an = safe_sqrt(d_ap), safe_sqrt(d_an)
        return d_ap, d_an
    rows = torch.arange(batch.num_anchors, device=batch.labels.device)[:, None]
    rows = rows.expand_as(columns)
    return batch.pair_distances(rows, batch.positives), batch.pair_distances(rows, columns)


def semi_hard_negative_index(
    batch: BatchInput, memory_budget: int = DEFAULT_MEMORY_BUDGET
) -> tuple[Tensor, Tensor, Tensor]:
    """Columns of the semi-hard negative of every (anchor, positive slot), by bucketing.

    Returns:
        ``(columns, found, hardest)``: (B, K) int64 columns aligned with ``batch.positives``,
        a (B, K) bool mask of the slots that have a negative farther than the positive, and
        (B,) the closest negative of each anchor (a valid column index even without one).
    """
    if batch.num_anchors * batch.k * batch.num_columns <= _DENSE_MAX_ELEMENTS:
        return _dense_semi_hard_index(batch)
    with torch.no_grad():
        d = batch.distances.detach()
        n_anchor, n_col = d.shape
        k = batch.k
        inf = torch.tensor(math.inf, dtype=d.dtype, device=d.device)
        d_ap = torch.where(batch.positive_mask, d.gather(1, batch.positives), inf)
        lower, order = d_ap.sort(dim=1)
        bucket_min = torch.full((n_anchor, k + 1), math.inf, dtype=d.dtype, device=d.device)
        bucket_col = torch.full((n_anchor, k + 1), n_col, dtype=torch.long, device=d.device)
        column_ids = torch.arange(n_col, device=d.device)
        # cache-sized row blocks (at most the memory budget)
        step = max(1, min(_BLOCK_ELEMENTS // max(1, n_col), memory_budget // (40 * max(1, n_col))))
        for start in range(0, n_anchor, step):
            rows = slice(start, min(n_anchor, start + step))
            values = batch.fill_excluded_(d[rows].clone(), math.inf, rows)
            # bucket r = #{d_ap < d_an}: farther than the r smallest positives
            bucket = _count_below(lower[rows], values)
            mins = bucket_min[rows].scatter_reduce_(1, bucket, values, "amin")
            # (an all-inf bucket may pick an excluded column: it is never "found" and, for
            # the fallback, only in rows without any negative, whose pairs are invalid)
            is_min = values == mins.gather(1, bucket)
            if d.device.type == "cpu":
                # few entries per row attain their bucket's minimum: scatter only those
                # (nonzero synchronises, which is free on CPU but not on an accelerator)
                r_idx, c_idx = is_min.nonzero(as_tuple=True)
                flat = (r_idx + start) * (k + 1) + bucket[r_idx, c_idx]
                bucket_col.view(-1).scatter_reduce_(0, flat, c_idx, "amin")
            else:
                candidates = torch.where(is_min, column_ids, n_col)
                bucket_col[rows].scatter_reduce_(1, bucket, candidates, "amin")
        # suffix minimum over buckets r ≥ j (flip, cumulative min, flip back)
        suffix_val, suffix_idx = torch.cummin(bucket_min.flip(1), dim=1)
        suffix_val = suffix_val.flip(1)
        suffix_bucket = k - suffix_idx.flip(1)
        suffix_col = bucket_col.gather(1, suffix_bucket).clamp_max(max(n_col - 1, 0))
        # the i-th smallest positive takes the best negative of buckets r ≥ i + 1
        found_sorted = torch.isfinite(suffix_val[:, 1:])
        columns = torch.empty_like(batch.positives).scatter_(1, order, suffix_col[:, 1:])
        found = torch.empty_like(batch.positive_mask).scatter_(1, order, found_sorted)
        return columns, found & batch.positive_mask, suffix_col[:, 0]


#: Up to this many (anchor, positive, column) triples (measured: B=256 K=16, 1M triples, was
#: 3× slower dense than bucketed), the semi-hard negatives are found by
#: one dense (B, K, M) masked minimum: fewer operator calls than the bucketing at small B.
_DENSE_MAX_ELEMENTS = 2**17


def _dense_semi_hard_index(batch: BatchInput) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`semi_hard_negative_index` by a dense (B, K, M) masked minimum (small batches)."""
    with torch.no_grad():
        d = batch.distances.detach()
        negatives = batch.fill_excluded_(d.clone(), math.inf)  # non-negatives at +inf
        d_ap = d.gather(1, batch.positives)
        farther = torch.where(
            negatives[:, None, :] > d_ap[:, :, None], negatives[:, None, :], math.inf
        )
        best, columns = farther.min(dim=2)
        found = torch.isfinite(best) & batch.positive_mask
        return columns, found, negatives.argmin(1)


#: Elements of a row block processed at once (fits in L2 cache).
_BLOCK_ELEMENTS = 2**19
#: Up to this many positives, bucket indices are counted by comparisons (faster on CPU than
#: a binary search); above, by ``searchsorted``.
_COMPARE_MAX_K = 32


def _count_below(sorted_thresholds: Tensor, values: Tensor) -> Tensor:
    """(rows, M) int64 #{i : t_i < value} for per-row thresholds (rows, K), +inf padded."""
    k = sorted_thresholds.shape[1]
    if k > _COMPARE_MAX_K:
        return torch.searchsorted(sorted_thresholds.contiguous(), values, right=False)
    count = torch.zeros(values.shape, dtype=torch.uint8, device=values.device)
    below = torch.empty(values.shape, dtype=torch.bool, device=values.device)
    for i in range(k):
        torch.lt(sorted_thresholds[:, i : i + 1], values, out=below)
        count.add_(below.view(torch.uint8))  # a view: no bool→uint8 conversion copy
    return count.long()
