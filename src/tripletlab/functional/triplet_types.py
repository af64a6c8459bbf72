"""Easy, semi-hard and hard triplets: counts without listing them, and per-step statistics.

For a valid triplet (a, p, n) with d_ap = D(a, p), d_an = D(a, n) and margin m:

* easy:      d_an > d_ap + m      (loss 0),
* semi-hard: d_ap < d_an ≤ d_ap + m,
* hard:      d_an ≤ d_ap.

Counting uses the bucketing of the batch losses: per anchor, sort its K values d_ap (and
d_ap + m); for every (a, n) pair one ``searchsorted`` gives how many of the anchor's
triplets with that negative fall in each class — O(B² log K) time, O(B²) memory, no B³ tensor.
(Schroff et al. 2015, "FaceNet", §3.2 for semi-hard; Hermans et al. 2017 for hard.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

from tripletlab.functional._batch_input import (
    DEFAULT_MEMORY_BUDGET,
    BatchInput,
    index_batch,
    prepare_batch,
    row_chunks,
)
from tripletlab.functional.distances import METRICS
from tripletlab.validation import (
    check_choice,
    check_embeddings,
    check_labels,
    check_nonnegative,
)

#: ``return_masks=True`` builds three (B, M, M) bool masks; refused above this many entries.
MAX_MASK_ENTRIES = 2**24


@dataclass(frozen=True)
class TripletCounts:
    """Numbers of valid triplets by class (0-dim int64 tensors) and optional (B, M, M) masks.

    ``masks`` (only with ``return_masks=True``) maps "easy", "semi_hard", "hard" to bool
    tensors indexed ``[a, p, n]``.
    """

    num_triplets: Tensor
    num_easy: Tensor
    num_semi_hard: Tensor
    num_hard: Tensor
    masks: dict[str, Tensor] | None = None


@dataclass(frozen=True)
class TripletStats:
    """Per-step statistics of a batch loss, as detached 0-dim tensors (no host sync).

    Fields:
        num_triplets: valid triplets (a, p, n) in the batch.
        num_active: loss terms with loss > 0 — triplets for batch-all, anchors for batch-hard,
            anchor–positive pairs for semi-hard.
        num_easy, num_semi_hard, num_hard: the batch's valid triplets by class (they sum to
            ``num_triplets``), whatever the loss selects.
        active_fraction: ``num_active`` over the number of the loss's valid terms.
        easy_fraction, semi_hard_fraction, hard_fraction: class counts over ``num_triplets``.
        mean_d_ap: mean distance over all anchor–positive pairs of the batch.
        mean_d_an: mean distance over all anchor–negative pairs of the batch.

    Every fraction or mean of an empty set is 0. Call :meth:`as_dict` only when logging: it
    reads the values on the host.
    """

    num_triplets: Tensor
    num_active: Tensor
    num_easy: Tensor
    num_semi_hard: Tensor
    num_hard: Tensor
    active_fraction: Tensor
    easy_fraction: Tensor
    semi_hard_fraction: Tensor
    hard_fraction: Tensor
    mean_d_ap: Tensor
    mean_d_an: Tensor

    def as_dict(self) -> dict[str, float]:
        """All fields as Python floats (one host read per field)."""
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


def classify_triplets(
    embeddings_or_distances: Tensor,
    labels: Tensor,
    margin: float = 0.2,
    metric: str = "sqeuclidean",
    return_masks: bool = False,
    is_distance_matrix: bool = False,
) -> TripletCounts:
    """Count the batch's valid triplets that are easy, semi-hard and hard.

    Args:
        embeddings_or_distances: (B, D) embeddings, or a (B, B) distance matrix when
            ``is_distance_matrix=True`` (its diagonal is ignored).
        labels: (B,) integer labels.
        margin: m ≥ 0 of the definitions above.
        metric: ``"sqeuclidean"``, ``"euclidean"`` or ``"cosine"`` (for embeddings).
        return_masks: also return (B, B, B) bool masks — only for small batches
            (B³ ≤ 2²⁴, i.e. B ≤ 256), since they are cubic in B.
        is_distance_matrix: the first argument is a distance matrix.

    Returns:
        A :class:`TripletCounts`; ``num_easy + num_semi_hard + num_hard == num_triplets``.

    Example:
        >>> x = torch.tensor([[0.0], [1.0], [10.0], [2.0]])
        >>> c = classify_triplets(x, torch.tensor([0, 0, 1, 1]), margin=4.0)
        >>> int(c.num_easy), int(c.num_semi_hard), int(c.num_hard), int(c.num_triplets)
        (4, 1, 3, 8)
    """
    margin = check_nonnegative(margin, "margin")
    check_choice(metric, "metric", METRICS)
    if is_distance_matrix:
        distances = check_embeddings(embeddings_or_distances, "distances")
        if distances.shape[0] != distances.shape[1]:
            raise ValueError(f"distances must be square; got shape {tuple(distances.shape)}")
        labels = check_labels(labels, distances.shape[0]).long()
        if distances.dtype in (torch.float16, torch.bfloat16):
            distances = distances.float()
        batch = index_batch(distances.detach(), labels, None)
    else:
        batch = prepare_batch(embeddings_or_distances.detach(), labels, metric, margin=margin)
    margin = margin * batch.unit  # distances in scaled units (overflow protection)
    counts = count_triplet_classes(batch, margin)
    if not return_masks:
        return counts
    return replace(counts, masks=triplet_masks(batch, margin))


def count_triplet_classes(
    batch: BatchInput, margin: float, memory_budget: int = DEFAULT_MEMORY_BUDGET
) -> TripletCounts:
    """Class counts of a prepared batch by threshold bucketing (row chunks within the budget)."""
    d = batch.distances.detach()
    device = d.device
    d_ap = d.gather(1, batch.positives)
    inf = torch.tensor(math.inf, dtype=d.dtype, device=device)
    lower = torch.where(batch.positive_mask, d_ap, inf).sort(dim=1).values
    upper = torch.where(batch.positive_mask, d_ap + margin, inf).sort(dim=1).values
    num_easy = torch.zeros((), dtype=torch.long, device=device)
    num_hard = torch.zeros((), dtype=torch.long, device=device)
    for rows in row_chunks(batch.num_anchors, 16 * max(1, batch.num_columns), memory_budget):
        block = d[rows].contiguous()
        easy = torch.searchsorted(upper[rows].contiguous(), block, right=False)  # #{d_ap+m < d_an}
        num_easy += batch.fill_excluded_(easy, 0, rows).sum()
        hard = batch.num_positives[rows, None] - torch.searchsorted(
            lower[rows].contiguous(), block, right=False
        )  # #{d_ap >= d_an}
        num_hard += batch.fill_excluded_(hard, 0, rows).sum()
    num_triplets = (batch.num_positives * batch.num_negatives).sum()
    return TripletCounts(num_triplets, num_easy, num_triplets - num_easy - num_hard, num_hard)


def triplet_masks(batch: BatchInput, margin: float) -> dict[str, Tensor]:
    """(B, M, M) bool masks of easy / semi-hard / hard triplets, indexed [a, p, n]."""
    d = batch.distances.detach()
    n_anchor, n_col = d.shape
    if n_anchor * n_col * n_col > MAX_MASK_ENTRIES:
        raise ValueError(
            f"return_masks=True needs B·M² ≤ {MAX_MASK_ENTRIES} entries; got "
            f"{n_anchor}·{n_col}² — use the counts, or mine_triplets(..., limit=...)"
        )
    is_positive = torch.zeros_like(d, dtype=torch.bool)
    is_positive.scatter_(1, batch.positives, batch.positive_mask)
    negative = batch.negative_mask()
    valid = is_positive[:, :, None] & negative[:, None, :]
    d_ap, d_an = d[:, :, None], d[:, None, :]
    return {
        "easy": valid & (d_an > d_ap + margin),
        "semi_hard": valid & (d_an > d_ap) & (d_an <= d_ap + margin),
        "hard": valid & (d_an <= d_ap),
    }


def batch_stats(
    batch: BatchInput,
    margin: float,
    num_active: Tensor,
    num_terms: Tensor,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> TripletStats:
    """The :class:`TripletStats` of a prepared batch, given the loss's active/valid term counts."""
    with torch.no_grad():
        counts = count_triplet_classes(batch, margin, memory_budget)
        d = batch.distances.detach()
        d_ap = torch.where(batch.positive_mask, d.gather(1, batch.positives), 0).sum(1)
        row_sum = d.sum(1)
        if batch.self_case:
            row_sum = row_sum - d.diagonal()
        n_pos = batch.num_positives.sum()
        n_neg = batch.num_negatives.sum()
        total = counts.num_triplets

        def ratio(num: Tensor, den: Tensor) -> Tensor:
            return num.to(d.dtype) / den.clamp_min(1).to(d.dtype)

        return TripletStats(
            num_triplets=total,
            num_active=num_active.detach().long(),
            num_easy=counts.num_easy,
            num_semi_hard=counts.num_semi_hard,
            num_hard=counts.num_hard,
            active_fraction=ratio(num_active.detach(), num_terms.detach()),
            easy_fraction=ratio(counts.num_easy, total),
            semi_hard_fraction=ratio(counts.num_semi_hard, total),
            hard_fraction=ratio(counts.num_hard, total),
            mean_d_ap=ratio(d_ap.sum(), n_pos) / batch.unit,
            mean_d_an=ratio((row_sum - d_ap).sum(), n_neg) / batch.unit,
        )
