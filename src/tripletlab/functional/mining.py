"""Explicit triplet mining: index tensors (a, p, n) for users who want the triplets listed.

The batch losses never list triplets; this module does, for inspection, for offline mining,
or to feed :func:`~tripletlab.functional.triplet_margin_loss`. Strategies select from the
batch's valid triplets (label(p) = label(a), p ≠ a, label(n) ≠ label(a)):

* ``"all"``       — every valid triplet,
* ``"hard"``      — d_an ≤ d_ap,
* ``"semi_hard"`` — d_ap < d_an ≤ d_ap + m,
* ``"easy"``      — d_an > d_ap + m.

These are the triplet classes of :func:`~tripletlab.functional.classify_triplets` and keep
*every* triplet of the class, like pytorch-metric-learning's ``TripletMarginMiner`` (not one
negative per pair as FaceNet's semi-hard selection of
:func:`~tripletlab.functional.batch_semi_hard_triplet_loss`). The union of "hard" and
"semi_hard" is exactly the set of triplets with a positive hinge loss.

Memory is bounded: triplets are generated anchor chunk by anchor chunk from a (rows, K, B)
mask sized to a budget; with ``limit``, a uniform random subset of at most ``limit`` triplets
is drawn without ever holding all of them (PML issues #367/#645 are "all" exhausting memory).
"""

from __future__ import annotations

import torch
from torch import Tensor

from tripletlab.functional._batch_input import DEFAULT_MEMORY_BUDGET, BatchInput, prepare_batch
from tripletlab.validation import check_choice, check_nonnegative

STRATEGIES: tuple[str, ...] = ("all", "hard", "semi_hard", "easy")


def mine_triplets(
    embeddings: Tensor,
    labels: Tensor,
    strategy: str = "all",
    margin: float = 0.2,
    metric: str = "sqeuclidean",
    limit: int | None = None,
    generator: torch.Generator | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> tuple[Tensor, Tensor, Tensor]:
    """Indices of the batch's triplets of one class.

    Args:
        embeddings: (B, D) embeddings (only their detached distances are used).
        labels: (B,) integer labels.
        strategy: ``"all"``, ``"hard"``, ``"semi_hard"`` or ``"easy"`` (see the module).
        margin: m ≥ 0 of the class definitions.
        metric: ``"sqeuclidean"``, ``"euclidean"`` or ``"cosine"``.
        limit: at most this many triplets, drawn uniformly without replacement (None: all).
        generator: random generator for the subsampling (deterministic results).
        memory_budget: bytes of mask a chunk may use; the result does not depend on it.

    Returns:
        ``(a, p, n)``: three (T,) int64 tensors on the embeddings' device, ordered by anchor,
        then positive, then negative.

    Example:
        >>> x = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
        >>> a, p, n = mine_triplets(x, torch.tensor([0, 0, 1, 1]), "hard")
        >>> torch.stack([a, p, n]).T.tolist()
        [[1, 0, 2], [2, 3, 1]]
    """
    check_choice(strategy, "strategy", STRATEGIES)
    margin = check_nonnegative(margin, "margin")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be None or an integer >= 0; got {limit!r}")
    batch = prepare_batch(embeddings.detach(), labels, metric, margin=margin)
    margin = margin * batch.unit  # distances in scaled units (overflow protection)
    device = batch.distances.device
    empty = torch.zeros(0, dtype=torch.long, device=device)
    if batch.k == 0:
        return empty, empty.clone(), empty.clone()
    rows_per_chunk = max(1, memory_budget // max(1, 4 * batch.k * batch.num_columns))
    chunks = [
        slice(s, min(batch.num_anchors, s + rows_per_chunk))
        for s in range(0, batch.num_anchors, rows_per_chunk)
    ]
    counts = torch.stack([_selection(batch, rows, strategy, margin).sum() for rows in chunks])
    total = int(counts.sum())
    if limit is None or total <= limit:
        wanted = None
    else:
        wanted = _sample_ordinals(total, limit, generator).to(device)
    offsets = torch.cumsum(counts, 0) - counts
    parts: list[Tensor] = []
    for rows, offset, count in zip(chunks, offsets.tolist(), counts.tolist(), strict=True):
        if count == 0:
            continue
        selected = _selection(batch, rows, strategy, margin)
        found = selected.nonzero()
        if wanted is not None:
            lo = torch.searchsorted(wanted, torch.tensor(offset, device=device))
            hi = torch.searchsorted(wanted, torch.tensor(offset + count, device=device))
            found = found[wanted[lo:hi] - offset]
        parts.append(found + torch.tensor([rows.start, 0, 0], device=device))
    if not parts:
        return empty, empty.clone(), empty.clone()
    triplets = torch.cat(parts)
    anchors, slots, negatives = triplets.unbind(1)
    return anchors, batch.positives[anchors, slots], negatives


def _selection(batch: BatchInput, rows: slice, strategy: str, margin: float) -> Tensor:
    """(rows, K, M) bool mask of the chosen triplets of the anchor rows."""
    d = batch.distances[rows]
    d_ap = d.gather(1, batch.positives[rows])[:, :, None]
    d_an = d[:, None, :]
    valid = batch.positive_mask[rows, :, None] & batch.negative_mask(rows)[:, None, :]
    if strategy == "hard":
        return valid & (d_an <= d_ap)
    if strategy == "semi_hard":
        return valid & (d_an > d_ap) & (d_an <= d_ap + margin)
    if strategy == "easy":
        return valid & (d_an > d_ap + margin)
    return valid


def _sample_ordinals(total: int, limit: int, generator: torch.Generator | None) -> Tensor:
    """``limit`` distinct integers of [0, total), uniformly at random, sorted."""
    if total <= 2**22 or (total <= 2**26 and total <= 4 * limit):
        return torch.randperm(total, generator=generator)[:limit].sort().values
    # Sparse case: draw with replacement and deduplicate until there are enough.
    chosen = torch.zeros(0, dtype=torch.long)
    while chosen.numel() < limit:
        extra = torch.randint(total, (limit - chosen.numel() + 16,), generator=generator)
        chosen = torch.unique(torch.cat([chosen, extra]))
    keep = torch.randperm(chosen.numel(), generator=generator)[:limit]
    return chosen[keep].sort().values
