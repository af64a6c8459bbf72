"""Dense pair forms for small batches: every (positive pair, column) comparison at once.

A batch of B rows in classes of K has P = B(K − 1) positive pairs (a, p). Batch-all and
semi-hard compare each pair's critical value c (d_ap + m, d_ap) with the anchor's distance
to every column n: the (P, B) differences t = c − D(a, n), −inf where n is not a negative.
At B ≤ 256 and P·B ≤ :data:`DENSE_PAIRS_MAX_ELEMENTS` these few elementwise passes cost
less than the general path's positive index, bucketing and refinement (measured at B = 128,
K = 2: ~70 operator calls a forward+backward against ~220), and far less than the B³
triplet cube. Each loss is one autograd Function from the rows to the loss, its gradient
written directly and taken through the Gram matrix's backward.

Decisions are exact: the matrix is screened (:class:`ScreenedDistances`) — where an entry
lies within the error bound of its pair's critical value, the entry and the pair's d_ap are
recomputed directly and the pair's row taken again, so each t has the sign it has on the
direct matrix.

Shapes: rows x (B, D); pairs ``anchors``, ``positives``, ``flat`` (P,) int64, grouped by
anchor (ascending); ``same`` (B, B) bool.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from tripletlab.functional._dense_small import (
    DENSE_MAX_BATCH,
    SmallBatch,
    checked_inputs,
    scaled_rows,
)
from tripletlab.functional._screened_distances import ScreenedDistances

#: Most (positive pair, column) comparisons of the dense pair forms, P·B = B²(K − 1) for
#: classes of K: a few (P, B) float temporaries of at most 1 MB each.
DENSE_PAIRS_MAX_ELEMENTS = 2**18


class Pairs(NamedTuple):
    """Positive pairs (a, p): (P,) int64 each, grouped by anchor (ascending)."""

    anchors: Tensor
    positives: Tensor
    flat: Tensor  # anchors·B + positives: the pairs' places in a (B, B) matrix

    def subset(self, index: Tensor) -> Pairs:
        """The pairs at ``index`` (P',)."""
        return Pairs(*(part.index_select(0, index) for part in self))


@dataclass(frozen=True)
class PairBatch:
    """A small batch with its positive pairs listed: the input of the dense pair forms."""

    rows: SmallBatch
    pairs: Pairs
    same: Tensor  # (B, B) bool: same label (the diagonal included)


def pair_rows(
    embeddings: Tensor, labels: Tensor, metric: str, max_elements: int | None = None
) -> PairBatch | None:
    """The batch and its positive pairs when B ≤ :data:`DENSE_MAX_BATCH` and the (P, B)
    comparisons number at most ``max_elements`` (default :data:`DENSE_PAIRS_MAX_ELEMENTS`);
    None otherwise.

    Example:
        >>> batch = pair_rows(torch.eye(3), torch.tensor([0, 1, 0]), "euclidean")
        >>> [part.tolist() for part in batch.pairs]
        [[0, 2], [2, 0], [2, 6]]
    """
    embeddings, labels = checked_inputs(embeddings, labels)
    n = embeddings.shape[0]
    if not 2 <= n <= DENSE_MAX_BATCH:
        return None
    same = labels[:, None] == labels
    anchors, positives = same.clone().fill_diagonal_(False).nonzero(as_tuple=True)
    limit = DENSE_PAIRS_MAX_ELEMENTS if max_elements is None else max_elements
    if anchors.numel() * n > limit:
        return None
    return PairBatch(
        rows=scaled_rows(embeddings, labels, metric),
        pairs=Pairs(anchors, positives, anchors * n + positives),
        same=same,
    )


def pair_differences(
    distances: ScreenedDistances, pairs: Pairs, same: Tensor, offset: float, exact: bool
) -> tuple[Tensor, Tensor]:
    """(P, B) t = c − D(a, n) for each pair's critical value c = d_ap + ``offset`` and its
    anchor's negatives n, −inf elsewhere; and the (P, B) mask of the other entries.

    ``exact``: every t gets the sign it has on the direct matrix — where the screen cannot
    decide (|t| within twice the error bound: c comes from the matrix too), the entry and
    the pair's d_ap are recomputed directly and the pair's row taken again.
    """
    with torch.no_grad():
        critical = _critical_values(distances, pairs, offset)
        t = torch.sub(critical[:, None], distances.values.index_select(0, pairs.anchors))
        not_negative = same.index_select(0, pairs.anchors)
        t.masked_fill_(not_negative, -math.inf)
        if exact and distances.any_near(t, critical):
            _decide_near_exactly_(distances, pairs, offset, t, critical, not_negative)
    return t, not_negative


def _critical_values(distances: ScreenedDistances, pairs: Pairs, offset: float) -> Tensor:
    """(P,) d_ap + offset from the matrix's values."""
    d_ap = distances.values.view(-1).index_select(0, pairs.flat)
    return d_ap.add_(offset) if offset else d_ap


def _decide_near_exactly_(
    distances: ScreenedDistances,
    pairs: Pairs,
    offset: float,
    t: Tensor,
    critical: Tensor,
    not_negative: Tensor,
) -> None:
    """Make the entries :meth:`~ScreenedDistances.near` flags exact, with their pairs' d_ap,
    and take those pairs' rows of ``t`` again (in place)."""
    pair, column = distances.near(t, critical).nonzero(as_tuple=True)
    if not pair.numel():
        return
    changed = torch.unique(pair)
    again = pairs.subset(changed)
    rows = pairs.anchors.index_select(0, pair)
    distances.make_exact_(torch.cat([rows, again.anchors]), torch.cat([column, again.positives]))
    critical_again = _critical_values(distances, again, offset)
    rows_again = torch.sub(critical_again[:, None], distances.values.index_select(0, again.anchors))
    t[changed] = rows_again.masked_fill_(not_negative.index_select(0, changed), -math.inf)


class _DensePairsBatchAll(torch.autograd.Function):
    """Batch-all from the (P, B) differences, dL/dD written directly and taken through the
    Gram matrix's backward (one Function from the rows to the loss).

    Row i of ``t`` is the pair (a_i, p_i): t[i, n] = d_{a_i p_i} + m − d_{a_i n}, −inf off the
    anchor's negatives, so invalid triplets have h(t) = h'(t) = 0. Then
    ∂L/∂d_ap = g_a Σ_n h'(t[i, n]) and ∂L/∂d_an = −g_a Σ_{i: a_i = a} h'(t[i, n]): a (P,) and a
    (B, B) reduction of the slope tensor are all the backward keeps.

    Returns (the per-anchor sums (B,) — or their total when ``per_anchor`` is False —, the
    number of active triplets, the number of valid triplets).
    """

    @staticmethod
    def forward(ctx, x, batch, metric, margin, smoothing, per_anchor):  # type: ignore[override]
        distances = ScreenedDistances(x, metric, batch.rows.largest)
        # the hinge decides d_an < d_ap + m; the smoothed loss decides nothing
        t, not_negative = pair_differences(
            distances, batch.pairs, batch.same, margin, exact=smoothing is None
        )
        num_triplets = not_negative.numel() - not_negative.sum()
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
        anchors = batch.pairs.anchors
        toward_negative = distances.values.new_zeros(distances.values.shape)
        toward_negative.index_add_(0, anchors, slope)
        ctx.save_for_backward(toward_positive, toward_negative, anchors, batch.pairs.flat)
        ctx.distances = distances
        ctx.mark_non_differentiable(num_active, num_triplets)
        if per_anchor:
            loss = per_pair.new_zeros(x.shape[0]).index_add_(0, anchors, per_pair)
        else:
            loss = per_pair.sum()
        return loss, num_active, num_triplets

    @staticmethod
    def backward(ctx, grad_loss, _grad_active, _grad_triplets):  # type: ignore[override]
        toward_positive, toward_negative, anchors, flat = ctx.saved_tensors
        distances = ctx.distances
        euclidean = distances.metric == "euclidean"
        g = grad_loss * 0.5 if euclidean else grad_loss  # ∂D/∂S = 1/(2D)
        if g.dim():  # per anchor
            grad = toward_negative * -g[:, None]  # 0 at the positives (saved: not in place)
            at_positives = toward_positive * g.index_select(0, anchors)
        else:
            grad = toward_negative * -g
            at_positives = toward_positive * g
        grad.view(-1).index_copy_(0, flat, at_positives)
        if euclidean:  # 0 where D = 0 (a finite subgradient)
            roots = distances.values
            grad = grad.div_(roots).masked_fill_(roots == 0, 0)
        return distances.matrix_backward(grad), None, None, None, None, None


def dense_batch_all_terms(
    batch: PairBatch, metric: str, margin: float, smoothing: float | None, per_anchor: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """(per-anchor sums or their total, active triplets, valid triplets), scaled units."""
    return _DensePairsBatchAll.apply(batch.rows.x, batch, metric, margin, smoothing, per_anchor)
