"""Each anchor's positives as a (B, K) index matrix, from one sort of the labels.

In a batch of B samples, let K be the largest number of positives of an anchor (K = k − 1 in a
P×k batch). Sorting the labels once puts every class in a contiguous block; an anchor's
positives are the other members of its block. Gathering the distance matrix with the (B, K)
index gives every d_ap at once, with a validity mask for anchors with fewer than K positives.
This replaces the B×B "same label" mask (and the B×B×B triplet mask) of naive batch losses.
"""

from __future__ import annotations

import torch
from torch import Tensor


def positive_index_matrix(
    labels: Tensor, ref_labels: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Column indices of each anchor's positives and their validity mask.

    Without ``ref_labels`` the positives of anchor ``a`` are the samples ``p ≠ a`` of the batch
    with ``labels[p] == labels[a]``; with ``ref_labels`` (queries against a reference set) they
    are the reference samples with ``ref_labels[p] == labels[a]`` (no self-exclusion).

    Args:
        labels: (B,) integer labels of the anchors.
        ref_labels: (M,) integer labels of the reference set, or None for the batch itself.

    Returns:
        ``(index, mask)``: (B, K) int64 column indices into the (B, M) distance matrix and a
        (B, K) bool mask, True for real positives. Padded slots point to a harmless column
        (the anchor itself, or column 0 in the reference case) so they can be gathered safely.
        Each row lists its positives in increasing order of their sorted-label position.

    Note:
        K is a shape, so it is read on the host once (one synchronisation per call).

    Example:
        >>> index, mask = positive_index_matrix(torch.tensor([0, 1, 0, 0]))
        >>> index
        tensor([[2, 3],
                [1, 1],
                [0, 3],
                [0, 2]])
        >>> mask
        tensor([[ True,  True],
                [False, False],
                [ True,  True],
                [ True,  True]])
    """
    self_case = ref_labels is None
    labels = labels.long()
    ref = labels if self_case else ref_labels.long()
    n_anchor, n_ref = labels.shape[0], ref.shape[0]
    device = labels.device
    if n_anchor == 0 or n_ref == 0:
        empty = torch.zeros((n_anchor, 0), dtype=torch.long, device=device)
        return empty, empty.bool()
    order = torch.argsort(ref, stable=True)
    sorted_ref = ref[order].contiguous()
    start = torch.searchsorted(sorted_ref, labels, right=False)
    count = torch.searchsorted(sorted_ref, labels, right=True) - start
    if self_case:
        count = count - 1
    k = int(count.max().clamp_min(0))
    slots = torch.arange(k, device=device)
    position = start[:, None] + slots[None, :]
    if self_case:
        rank = torch.empty_like(order).scatter_(0, order, torch.arange(n_ref, device=device))
        position = position + (position >= rank[:, None]).long()
    mask = slots[None, :] < count[:, None]
    index = order[position.clamp_max(n_ref - 1)]
    fill = torch.arange(n_anchor, device=device) if self_case else torch.zeros_like(labels)
    index = torch.where(mask, index, fill[:, None])
    return index, mask
