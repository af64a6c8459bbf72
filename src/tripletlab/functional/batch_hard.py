"""Batch-hard triplet loss (Hermans et al.): the hardest positive and negative per anchor.

    L_a = h(max_p D(a, p) − min_n D(a, n) + m)   for every anchor with a positive and a negative,

h the hinge or ``μ·softplus(x/μ)``; μ = 1 with m = 0 is the paper's soft margin
``softplus(d_ap − d_an)``. O(B²) time and memory: the hardest positive is an argmax over the
(B, K) gathered positive distances, the hardest negative an argmin over the distance matrix
with the K + 1 non-negative columns of each row masked. The matrix is computed without
autograd; the 2B selected distances are recomputed from the embeddings, so the backward pass
is O(B·D) (no B×B gradient, no backward GEMMs).

Reference: Hermans, Beyer & Leibe 2017, "In Defense of the Triplet Loss for Person
Re-Identification", §2.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from tripletlab.functional._batch_input import (
    BatchInput,
    check_batch_arguments,
    empty_batch_terms,
    prepare_batch,
)
from tripletlab.functional._compile import eager_under_compile
from tripletlab.functional._dense_small import (
    DENSE_MAX_BATCH,
    dense_batch_hard_terms,
    reduce_dense,
    small_batch_rows,
)
from tripletlab.functional._validation import (
    check_scaled_result,
)
from tripletlab.functional.reductions import REDUCTIONS, reduce_total
from tripletlab.functional.smoothing import smooth_hinge
from tripletlab.functional.triplet_types import TripletStats, batch_stats


@eager_under_compile
def batch_hard_triplet_loss(
    embeddings: Tensor,
    labels: Tensor,
    margin: float = 0.2,
    metric: str = "sqeuclidean",
    smoothing: float | None = None,
    reduction: str = "mean",
    ref_embeddings: Tensor | None = None,
    ref_labels: Tensor | None = None,
    return_stats: bool = False,
) -> Tensor | tuple[Tensor, TripletStats]:
    """Triplet loss of each anchor's hardest positive and hardest negative (batch-hard).

    Args:
        embeddings: (B, D) floating tensor (float16/bfloat16 are computed in float32).
        labels: (B,) integer labels.
        margin: m ≥ 0 (0 with ``smoothing=1`` is Hermans' soft margin).
        metric: ``"sqeuclidean"`` (default), ``"euclidean"`` (the paper's) or ``"cosine"``.
        smoothing: None or 0 for the hinge; μ > 0 for ``μ·softplus(x/μ)``.
        reduction: ``"mean"`` (default, as in the paper: over anchors that have a positive
            and a negative), ``"mean_active"`` (over anchors with loss > 0), ``"sum"``, or
            ``"none"`` ((B,) per-anchor losses, 0 for anchors without a triplet).
        ref_embeddings, ref_labels: optional (M, D) / (M,) reference set (see
            :func:`~tripletlab.functional.batch_all_triplet_loss`).
        return_stats: also return a :class:`~tripletlab.functional.TripletStats`
            (``num_active`` counts anchors).

    Returns:
        The loss (0-dim, or (B,) for ``"none"``), or ``(loss, stats)``. Exactly 0 with zero
        gradients when no anchor has both a positive and a negative.

    Example:
        >>> x = torch.tensor([[0.0], [1.0], [2.0], [3.0]], requires_grad=True)
        >>> loss = batch_hard_triplet_loss(x, torch.tensor([0, 0, 1, 1]), margin=4.0)
        >>> loss.backward()
        >>> round(loss.item(), 4)  # (1 + 4 + 4 + 1) / 4
        2.5
    """
    margin, smoothing = check_batch_arguments(margin, metric, smoothing, reduction, REDUCTIONS)
    if ref_embeddings is None and not return_stats:
        dense = _dense_small_batch(embeddings, labels, margin, metric, smoothing, reduction)
        if dense is not None:
            return dense
    batch = prepare_batch(
        embeddings,
        labels,
        metric,
        ref_embeddings,
        ref_labels,
        differentiable=False,
        margin=margin,
        # the loss decides nothing on the matrix (the selected distances are recomputed
        # directly, and tied candidates have equal direct distances): only the statistics
        # compare entries
        offsets=(0.0, margin) if return_stats else (),
    )
    margin, smoothing = batch.unit * margin, smoothing and batch.unit * smoothing
    valid = (batch.num_positives > 0) & (batch.num_negatives > 0)
    if batch.k == 0 or batch.num_columns == 0:
        per_anchor, _ = empty_batch_terms(batch)
    else:
        # select on the (non-differentiable) matrix, recompute the 2B selected distances
        rows = torch.arange(batch.num_anchors, device=batch.labels.device)
        d_ap = batch.pair_distances(rows, hardest_positive_index(batch))
        d_an = batch.pair_distances(rows, hardest_negative_index(batch))
        per_anchor = torch.where(valid, smooth_hinge(d_ap - d_an + margin, smoothing), 0)
    if batch.unit != 1.0:  # distances in scaled units (overflow protection): back to the user's
        per_anchor = check_scaled_result(per_anchor / batch.unit, batch.unit, "the loss")
    num_terms = valid.sum()
    num_active = (per_anchor.detach() > 0).sum()
    if reduction == "none":
        loss = per_anchor
    else:
        loss = reduce_total(per_anchor.sum(), num_terms, num_active, reduction)
    if not return_stats:
        return loss
    return loss, batch_stats(batch, margin, num_active, num_terms)


def _dense_small_batch(
    embeddings: Tensor,
    labels: Tensor,
    margin: float,
    metric: str,
    smoothing: float | None,
    reduction: str,
) -> Tensor | None:
    """The loss by the dense small-batch form, or None when the batch is not small."""
    rows = small_batch_rows(embeddings, labels, metric, DENSE_MAX_BATCH)
    if rows is None:
        return None
    loss, num_valid, num_active = dense_batch_hard_terms(
        rows,
        metric,
        margin * rows.unit,
        smoothing and smoothing * rows.unit,
        per_anchor=reduction == "none",
    )
    return reduce_dense(rows, loss, num_valid, num_active, reduction)


def hardest_positive_index(batch: BatchInput) -> Tensor:
    """(B,) column of each anchor's farthest positive (arbitrary for anchors without one)."""
    with torch.no_grad():
        d_ap = batch.distances.detach().gather(1, batch.positives)
        slot = torch.where(batch.positive_mask, d_ap, -math.inf).argmax(1)
        return batch.positives.gather(1, slot[:, None]).squeeze(1)


def hardest_negative_index(batch: BatchInput) -> Tensor:
    """(B,) column of each anchor's closest negative (arbitrary for anchors without one)."""
    with torch.no_grad():
        masked = batch.distances.detach().clone()
        batch.fill_excluded_(masked, math.inf)
        return masked.argmin(1)


def easiest_negative_index(batch: BatchInput) -> Tensor:
    """(B,) column of each anchor's farthest negative (arbitrary for anchors without one)."""
    with torch.no_grad():
        masked = batch.distances.detach().clone()
        batch.fill_excluded_(masked, -math.inf)
        return masked.argmax(1)
