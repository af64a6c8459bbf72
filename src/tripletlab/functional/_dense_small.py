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
from tripletlab.functional._screened_distances import ScreenedDistances
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
#: Most (positive pair, column) comparisons of the dense pair forms, P·B = B²(K − 1) for
#: classes of K: a few (P, B) float temporaries of at most 1 MB each.
DENSE_PAIRS_MAX_ELEMENTS = 2**18
#: Up to this many (pair, column) entries, semi-hard negatives come from the (P, B)
#: differences (a few elementwise passes); above, from one sort of the B×B matrix and a
#: binary search per pair (the sort's fixed cost, ~1 ms at B = 128, then wins).
SEMI_HARD_DIFFERENCES_MAX_ELEMENTS = 2**17


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


class _DensePairsBatchAll(torch.autograd.Function):
    """Per-anchor batch-all sums from the (P, B) tensor of (positive pair, column), dL/dD
    written directly.

    Row i of ``t`` is the pair (a_i, p_i): t[i, n] = d_{a_i p_i} + m − d_{a_i n}, −inf off the
    anchor's negatives, so invalid triplets have h(t) = h'(t) = 0. Then
    ∂L/∂d_ap = g_a Σ_n h'(t[i, n]) and ∂L/∂d_an = −g_a Σ_{i: a_i = a} h'(t[i, n]): a (P,) and a
    (B, B) reduction of the slope tensor are all the backward keeps. P·B = B²(K − 1) elements
    for classes of K, against B³ for the whole triplet cube.
    """

    @staticmethod
    def forward(ctx, graph, roots, t, anchors, positives, smoothing):  # type: ignore[override]
        # roots: the distances when ``graph`` holds their squares (euclidean), else None;
        # t is consumed in place (a fresh temporary costs its page faults on each call)
        if smoothing:
            terms = torch.nn.functional.softplus(t, beta=1.0 / smoothing, threshold=20.0)
            per_pair = terms.sum(1)
            num_active = terms.sign_().sum()
            slope = t.div_(smoothing).sigmoid_()
            toward_positive = slope.sum(1)
        else:
            terms = t.clamp_min_(0)
            per_pair = terms.sum(1)
            slope = terms.sign_()  # 1 where active, 0 elsewhere (terms ≥ 0)
            toward_positive = slope.sum(1)
            num_active = toward_positive.sum()
        toward_negative = graph.new_zeros(graph.shape).index_add_(0, anchors, slope)
        ctx.save_for_backward(toward_positive, toward_negative, anchors, positives, roots)
        per_anchor = graph.new_zeros(graph.shape[0]).index_add_(0, anchors, per_pair)
        ctx.mark_non_differentiable(num_active)
        return per_anchor, num_active

    @staticmethod
    def backward(ctx, grad_per_anchor, _grad_active):  # type: ignore[override]
        toward_positive, toward_negative, anchors, positives, roots = ctx.saved_tensors
        g = grad_per_anchor if roots is None else grad_per_anchor * 0.5  # ∂D/∂S = 1/(2D)
        grad = toward_negative * -g[:, None]  # 0 at the positives (saved: not in place)
        grad[anchors, positives] = toward_positive * g.index_select(0, anchors)
        if roots is not None:  # 0 where D = 0 (a finite subgradient)
            grad = grad.div_(roots).masked_fill_(roots == 0, 0)
        return grad, None, None, None, None, None


@dataclass(frozen=True)
class PairBatch:
    """A small batch with its positive pairs listed: the input of the dense pair forms."""

    rows: SmallBatch
    anchors: Tensor  # (P,) int64, ascending
    positives: Tensor  # (P,) int64: the pairs (anchors[i], positives[i]), same label, distinct
    same: Tensor  # (B, B) bool: same label (the diagonal included)



def pair_rows(embeddings: Tensor, labels: Tensor, metric: str) -> PairBatch | None:
    """The batch and its positive pairs when B ≤ :data:`DENSE_MAX_BATCH` and the (P, B)
    comparisons number at most :data:`DENSE_PAIRS_MAX_ELEMENTS`; None otherwise."""
    embeddings, labels = _checked(embeddings, labels)
    if not 2 <= embeddings.shape[0] <= DENSE_MAX_BATCH:
        return None
    same = labels[:, None] == labels[None, :]
    anchors, positives = same.clone().fill_diagonal_(False).nonzero(as_tuple=True)
    if anchors.numel() * embeddings.shape[0] > DENSE_PAIRS_MAX_ELEMENTS:
        return None
    rows = _scaled_rows(embeddings, labels, metric)
    return PairBatch(rows=rows, anchors=anchors, positives=positives, same=same)


def pair_differences(
    distances: ScreenedDistances,
    anchors: Tensor,
    same: Tensor,
    critical: Tensor,
    exact: bool,
    fill: float = -math.inf,
) -> tuple[Tensor, Tensor]:
    """(P, B) critical − D(a, n) for each pair's anchor a and negative n, ``fill`` elsewhere;
    and the (P, B) mask of the other entries (same label as the anchor).

    ``exact``: the entries the screen cannot decide (|t| within the GEMM error bound) are
    recomputed directly first, so that every t has the sign of the direct matrix's.
    """
    with torch.no_grad():
        t = torch.sub(critical[:, None], distances.values.index_select(0, anchors))
        not_negative = same.index_select(0, anchors)
        t.masked_fill_(not_negative, fill)
        if exact:
            pair, column = distances.near(t, critical).nonzero(as_tuple=True)
            if pair.numel():
                rows = anchors.index_select(0, pair)
                distances.make_exact_(rows, column)
                t[pair, column] = critical.index_select(0, pair) - distances.values[rows, column]
    return t, not_negative


def dense_batch_all_terms(
    batch: PairBatch, metric: str, margin: float, smoothing: float | None
) -> tuple[Tensor, Tensor, Tensor]:
    """(per-anchor sums, number of active triplets, number of triplets), in scaled units."""
    anchors, positives = batch.anchors, batch.positives
    distances = ScreenedDistances(batch.rows.x, metric, anchors, positives)
    threshold = distances.values[anchors, positives] + margin
    # the hinge decides d_an < d_ap + m; the smoothed loss decides nothing
    t, not_negative = pair_differences(
        distances, anchors, batch.same, threshold, exact=smoothing is None
    )
    num_triplets = not_negative.numel() - not_negative.sum()
    roots = distances.values if metric == "euclidean" else None
    per_anchor, num_active = _DensePairsBatchAll.apply(
        distances.graph, roots, t, anchors, positives, smoothing
    )
    return per_anchor, num_active, num_triplets


def dense_semi_hard_terms(
    batch: PairBatch, metric: str, margin: float, smoothing: float | None, fallback: str
) -> tuple[Tensor, Tensor, Tensor]:
    """FaceNet's semi-hard loss in pair form: (per-anchor sums, pairs, active pairs).

    Pair (a, p) takes n* = argmin {d_an : n negative, d_an > d_ap} — the largest negative
    t = d_ap − d_an of its row of the (P, B) differences, ties by column — else the fallback
    (the anchor's closest or farthest negative; ``"skip"`` drops the pair). The decisions
    d_an > d_ap are exact (screened, see :class:`ScreenedDistances`).
    """
    anchors, positives = batch.anchors, batch.positives
    distances = ScreenedDistances(batch.rows.x, metric, anchors, positives)
    with torch.no_grad():
        column, found = _semi_hard_negatives(batch, distances)
        other = _fallback_negative(distances.values, batch.same, fallback)
        column = torch.where(found, column, other.index_select(0, anchors))
        pair_valid = (~batch.same).any(1).index_select(0, anchors)
        if fallback == "skip":
            pair_valid &= found
    graph = distances.graph
    both = torch.cat([graph[anchors, positives], graph[anchors, column]])
    if metric == "euclidean":  # the graph holds the squares
        both = safe_sqrt(both)
    num_pairs = anchors.numel()
    d_ap, d_an = both[:num_pairs], both[num_pairs:]
    terms = torch.where(pair_valid, smooth_hinge(d_ap - d_an + margin, smoothing), 0)
    per_anchor = graph.new_zeros(graph.shape[0]).index_add(0, anchors, terms)
    return per_anchor, pair_valid.sum(), (terms.detach() > 0).sum()


def _semi_hard_by_differences(
    distances: ScreenedDistances, anchors: Tensor, same: Tensor, d_ap: Tensor
) -> tuple[Tensor, Tensor]:
    """(column, found) of the pairs (anchors[i], ·) with positive distance d_ap[i], from the
    screened (P, B) differences t = d_ap − d_an: the semi-hard negative has the largest
    t < 0 (ties: the first column)."""
    t, _ = pair_differences(distances, anchors, same, d_ap, exact=True, fill=math.inf)
    best, column = torch.where(t < 0, t, -math.inf).max(1)  # d_an > d_ap ⟺ t < 0
    return column, best > -math.inf


def _semi_hard_negatives(batch: PairBatch, distances: ScreenedDistances) -> tuple[Tensor, Tensor]:
    """(column, found) of each pair's semi-hard negative, by one sort of each row's negatives
    and a binary search per entry: O(B² log B) whatever K.

    The search decides on GEMM values: it is exact for a pair when the largest negative at
    most d_ap and the smallest one above it both lie beyond the error bound (then so does
    every other negative of the row). The few pairs for which they do not — ties,
    duplicates, near-ties — are decided by the screened differences of their row.
    """
    anchors, positives = batch.anchors, batch.positives
    values = distances.values
    n_col = values.shape[1]
    d_ap = values[anchors, positives]
    if anchors.numel() * n_col <= SEMI_HARD_DIFFERENCES_MAX_ELEMENTS:
        return _semi_hard_by_differences(distances, anchors, batch.same, d_ap)
    ascending, order = torch.where(batch.same, math.inf, values).sort(dim=1, stable=True)
    # first = #{negatives n of a : d_an ≤ d_ap}: the slot of the first one beyond d_ap
    first = _search_rows(ascending, anchors, d_ap, batch.same.sum(1) - 1)
    flat = anchors * n_col + first
    found = first < (~batch.same).sum(1).index_select(0, anchors)
    below = ascending.view(-1).index_select(0, (flat - 1).clamp_min_(0))
    above = ascending.view(-1).index_select(0, flat.clamp_max(ascending.numel() - 1))
    around = torch.stack([d_ap - below, d_ap - above], 1)
    around[:, 0].masked_fill_(first == 0, math.inf)  # no negative at most d_ap
    around[:, 1].masked_fill_(~found, -math.inf)  # none beyond
    column = order.view(-1).index_select(0, torch.minimum(flat, anchors * n_col + n_col - 1))
    unsure = distances.near(around, d_ap).any(1).nonzero()[:, 0]
    if unsure.numel():
        column[unsure], found[unsure] = _semi_hard_by_differences(
            distances, anchors.index_select(0, unsure), batch.same, d_ap.index_select(0, unsure)
        )
    return column, found


def _search_rows(
    sorted_rows: Tensor, anchors: Tensor, queries: Tensor, per_anchor: Tensor
) -> Tensor:
    """(P,) #{sorted_rows[anchors[i]] ≤ queries[i]} by one ``searchsorted`` of a (B, K_max)
    padded query matrix (pairs grouped by anchor, ascending, ``per_anchor`` pairs each)."""
    if anchors.numel() == 0:
        return anchors.clone()
    starts = per_anchor.cumsum(0) - per_anchor
    slot = torch.arange(anchors.numel(), device=anchors.device) - starts.index_select(0, anchors)
    width = int(per_anchor.max())
    padded = queries.new_zeros(sorted_rows.shape[0] * width)
    padded[anchors * width + slot] = queries
    found = torch.searchsorted(sorted_rows, padded.view(sorted_rows.shape[0], width), right=True)
    return found.view(-1).index_select(0, anchors * width + slot)


def _fallback_negative(values: Tensor, same: Tensor, fallback: str) -> Tensor:
    """(B,) each anchor's closest negative (``"easiest"``: farthest); arbitrary without one."""
    if fallback == "easiest":
        return torch.where(same, -math.inf, values).argmax(1)
    return torch.where(same, math.inf, values).argmin(1)
