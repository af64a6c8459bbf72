"""Validated inputs shared by the batch losses: the distance matrix and the positive index.

Every batch loss builds the (B, M) distance matrix once (M = B, or the size of the reference
set) and the (B, K) positive index of :mod:`tripletlab.functional.positives`. Negatives are
never listed: a column is a negative of row ``a`` unless it is one of the anchor's "excluded"
columns (its positives and, without a reference set, itself), which are at most K + 1 per row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from tripletlab.functional._validation import (
    check_choice,
    check_embeddings,
    check_labels,
    check_nonnegative,
    check_smoothing,
)
from tripletlab.functional.distances import METRICS, pairwise_distances
from tripletlab.functional.positives import positive_index_matrix

#: Default bound, in bytes, on the temporaries a batch loss allocates at once (per row chunk).
DEFAULT_MEMORY_BUDGET = 256 * 2**20


@dataclass(frozen=True)
class BatchInput:
    """The distance matrix of a batch and the index of its positives."""

    distances: Tensor  # (B, M), in the compute dtype, differentiable
    labels: Tensor  # (B,) int64
    ref_labels: Tensor  # (M,) int64 (the batch labels themselves when there is no reference)
    positives: Tensor  # (B, K) int64 column indices
    positive_mask: Tensor  # (B, K) bool
    num_positives: Tensor  # (B,) int64, K_a
    num_negatives: Tensor  # (B,) int64, N_a
    excluded: Tensor  # (B, E) int64 columns that are not negatives (positives, self, padding)
    has_excluded: Tensor  # (B,) bool, False where the row has no excluded column at all

    @property
    def self_case(self) -> bool:
        """True when the columns are the batch itself (no reference set)."""
        return self.labels is self.ref_labels

    @property
    def num_anchors(self) -> int:
        return self.distances.shape[0]

    @property
    def num_columns(self) -> int:
        return self.distances.shape[1]

    @property
    def k(self) -> int:
        return self.positives.shape[1]

    def negative_mask(self, rows: slice = slice(None)) -> Tensor:
        """(rows, M) bool mask of negatives (different label)."""
        return self.labels[rows, None] != self.ref_labels[None, :]

    def fill_excluded_(
        self, values: Tensor, fill: float | int, rows: slice = slice(None)
    ) -> Tensor:
        """Write ``fill`` in place at the excluded (non-negative) columns of ``values[rows]``.

        ``values`` holds only the rows ``rows`` (a row chunk of the (B, M) matrix).
        """
        index = self.excluded[rows]
        src = torch.full(index.shape, fill, dtype=values.dtype, device=values.device)
        src = torch.where(self.has_excluded[rows, None], src, values.gather(1, index))
        return values.scatter_(1, index, src)


def check_batch_arguments(
    margin: float, metric: str, smoothing: float | None, reduction: str, reductions: tuple
) -> tuple[float, float | None]:
    """Validate the scalar arguments every batch loss shares; returns (margin, smoothing)."""
    margin = check_nonnegative(margin, "margin")
    check_choice(metric, "metric", METRICS)
    check_choice(reduction, "reduction", reductions)
    return margin, check_smoothing(smoothing)


def prepare_batch(
    embeddings: Tensor,
    labels: Tensor,
    metric: str,
    ref_embeddings: Tensor | None = None,
    ref_labels: Tensor | None = None,
) -> BatchInput:
    """Validate a batch, compute its distance matrix and positive index."""
    embeddings = check_embeddings(embeddings, "embeddings")
    labels = check_labels(labels, embeddings.shape[0]).long()
    if (ref_embeddings is None) != (ref_labels is None):
        raise ValueError("ref_embeddings and ref_labels must be given together")
    self_case = ref_embeddings is None
    if self_case:
        distances = pairwise_distances(embeddings, metric=metric)
        ref = labels
    else:
        ref_embeddings = check_embeddings(ref_embeddings, "ref_embeddings")
        ref = check_labels(ref_labels, ref_embeddings.shape[0], "ref_labels").long()
        if ref.device != labels.device:
            raise ValueError("labels and ref_labels must be on the same device")
        distances = pairwise_distances(embeddings, ref_embeddings, metric=metric)
    return index_batch(distances, labels, None if self_case else ref)


def index_batch(distances: Tensor, labels: Tensor, ref_labels: Tensor | None) -> BatchInput:
    """A :class:`BatchInput` for an already computed (B, M) distance matrix."""
    self_case = ref_labels is None
    ref = labels if self_case else ref_labels
    positives, positive_mask = positive_index_matrix(labels, ref_labels)
    num_positives = positive_mask.sum(1)
    n_anchor, n_ref = distances.shape
    arange = torch.arange(n_anchor, device=labels.device)
    if self_case:
        excluded = torch.cat([arange[:, None], positives], dim=1)
        has_excluded = torch.ones(n_anchor, dtype=torch.bool, device=labels.device)
        num_negatives = n_ref - 1 - num_positives
    else:
        # padded slots must point at a non-negative column too: the anchor's first positive
        excluded = torch.where(positive_mask, positives, positives[:, :1])
        has_excluded = num_positives > 0
        num_negatives = n_ref - num_positives
        if excluded.shape[1] == 0:
            excluded = torch.zeros((n_anchor, 1), dtype=torch.long, device=labels.device)
    return BatchInput(
        distances=distances,
        labels=labels,
        ref_labels=ref,
        positives=positives,
        positive_mask=positive_mask,
        num_positives=num_positives,
        num_negatives=num_negatives,
        excluded=excluded,
        has_excluded=has_excluded,
    )


def empty_batch_terms(batch: BatchInput) -> tuple[Tensor, Tensor]:
    """Per-anchor zero losses still attached to the graph (zero gradient), and zero counts."""
    zero = batch.distances.sum(1) * 0
    return zero, torch.zeros(batch.num_anchors, dtype=torch.long, device=zero.device)


def row_chunks(n_rows: int, bytes_per_row: int, budget: int) -> Iterator[slice]:
    """Slices of at most ``budget // bytes_per_row`` rows (at least one) covering ``n_rows``."""
    step = max(1, int(budget) // max(1, int(bytes_per_row)))
    for start in range(0, n_rows, step):
        yield slice(start, min(n_rows, start + step))
