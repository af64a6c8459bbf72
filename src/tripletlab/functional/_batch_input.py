"""Validated inputs shared by the batch losses: the distance matrix and the positive index.

Every batch loss builds the (B, M) distance matrix once (M = B, or the size of the reference
set) and the (B, K) positive index of :mod:`tripletlab.functional.positives`. Negatives are
never listed: a column is a negative of row ``a`` unless it is one of the anchor's "excluded"
columns (its positives and, without a reference set, itself), which are at most K + 1 per row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from tripletlab.functional._refined_distances import differentiable_values, refined_distances
from tripletlab.functional._validation import (
    check_choice,
    check_embeddings,
    check_labels,
    check_nonnegative,
    check_smoothing,
    compute_dtype,
    finite_max_abs,
    overflow_scale,
)
from tripletlab.functional.distances import METRIC_DEGREE, METRICS, pairwise_distances, row_distance
from tripletlab.functional.positives import positive_index_matrix

#: Default bound, in bytes, on the temporaries a batch loss allocates at once (per row chunk).
DEFAULT_MEMORY_BUDGET = 256 * 2**20


@dataclass(frozen=True)
class BatchInput:
    """The distance matrix of a batch and the index of its positives."""

    distances: Tensor  # (B, M), in the compute dtype (differentiable unless asked otherwise)
    labels: Tensor  # (B,) int64
    ref_labels: Tensor  # (M,) int64 (the batch labels themselves when there is no reference)
    positives: Tensor  # (B, K) int64 column indices
    positive_mask: Tensor  # (B, K) bool
    num_positives: Tensor  # (B,) int64, K_a
    num_negatives: Tensor  # (B,) int64, N_a
    excluded: Tensor  # (B, E) int64 columns that are not negatives (positives, self, padding)
    has_excluded: Tensor  # (B,) bool, False where the row has no excluded column at all
    embeddings: Tensor | None = None  # (B, D) anchors, compute dtype (attached to the graph)
    ref_embeddings: Tensor | None = None  # (M, D) columns (the batch itself without a reference)
    metric: str = "sqeuclidean"
    graph: Tensor | None = None  # the differentiable matrix (squared distances for euclidean)
    unit: float = 1.0  # distances are in units scaled by this (overflow protection)

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

    def pair_distances(self, rows: Tensor, columns: Tensor) -> Tensor:
        """Differentiable D(rows[i], columns[i]) recomputed from the embeddings (any shape)."""
        # index_select: its backward is index_add_, far cheaper than advanced indexing's
        # accumulating index_put_
        a = self.embeddings.index_select(0, rows.reshape(-1))
        c = self.ref_embeddings.index_select(0, columns.reshape(-1))
        return row_distance(a, c, self.metric).reshape(rows.shape)

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
    differentiable: bool = True,
    margin: float = 0.0,
    offsets: tuple[float, ...] | None = None,
    roots_in_place: bool = False,
) -> BatchInput:
    """Validate a batch, compute its distance matrix and positive index.

    The matrix is exact where the triplet decisions are made (0, every d_ap and d_ap +
    ``margin``, or d_ap + each of ``offsets`` when given — a loss passes only the
    comparisons it makes; see :mod:`tripletlab.functional._refined_distances`). Embeddings so large that
    their distances would overflow are scaled by a power of two first; the batch records the
    factor of the distances (``unit``), by which the losses scale margin and smoothing and
    divide their result.

    With ``differentiable=False`` the distance matrix is computed without autograd: losses
    that depend on a few selected distances only (batch-hard, semi-hard) select with it and
    recompute the selected distances from the embeddings (:meth:`BatchInput.pair_distances`),
    so their backward pass is O(B·D) instead of a B×B matrix and two GEMMs.

    ``roots_in_place``: see :func:`~tripletlab.functional._refined_distances.refined_distances`
    (``graph`` is then only an autograd handle; ``distances`` holds the values).
    """
    check_embeddings(embeddings, "embeddings", check_values=False)
    labels = check_labels(labels, embeddings.shape[0]).long()
    if (ref_embeddings is None) != (ref_labels is None):
        raise ValueError("ref_embeddings and ref_labels must be given together")
    self_case = ref_embeddings is None
    largest = finite_max_abs(embeddings, "embeddings")
    if self_case:
        ref = labels
    else:
        ref_embeddings = check_embeddings(ref_embeddings, "ref_embeddings", check_values=False)
        largest = max(largest, finite_max_abs(ref_embeddings, "ref_embeddings"))
        ref = check_labels(ref_labels, ref_embeddings.shape[0], "ref_labels").long()
        if ref.device != labels.device:
            raise ValueError("labels and ref_labels must be on the same device")
        if ref_embeddings.shape[1] != embeddings.shape[1]:
            raise ValueError(
                "embeddings and ref_embeddings must have the same dimension; got "
                f"{embeddings.shape[1]} and {ref_embeddings.shape[1]}"
            )
    columns_in = embeddings if ref_embeddings is None else ref_embeddings
    dtype = compute_dtype(embeddings, columns_in)
    scale = overflow_scale(largest, embeddings.shape[1], dtype)
    x = _scaled(embeddings, dtype, scale)
    y = None if ref_embeddings is None else _scaled(ref_embeddings, dtype, scale)
    unit = scale ** METRIC_DEGREE[metric]
    positives, positive_mask = positive_index_matrix(labels, None if self_case else ref)
    with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
        if x.shape[0] == 0 or (y is not None and y.shape[0] == 0):
            graph = values = pairwise_distances(x, y, metric=metric)  # type: ignore[arg-type]
        else:
            graph, values = refined_distances(
                x,
                metric,
                y,
                positives,
                positive_mask,
                offsets=tuple(o * unit for o in ((0.0, margin) if offsets is None else offsets)),
                roots_in_place=roots_in_place,
            )
    batch = index_batch(values, labels, None if self_case else ref, (positives, positive_mask))
    columns = x if self_case else y
    return replace(
        batch, embeddings=x, ref_embeddings=columns, metric=metric, graph=graph, unit=unit
    )


def _scaled(x: Tensor, dtype: torch.dtype, scale: float) -> Tensor:
    x = x.to(dtype)
    return x if scale == 1.0 else x * scale


def batch_distances(embeddings: Tensor, metric: str, ref_embeddings: Tensor | None) -> Tensor:
    """The (B, M) distance matrix of (already scaled) rows, attached to the graph."""
    graph, values = refined_distances(embeddings, metric, ref_embeddings)
    return differentiable_values(graph, values, metric)


def index_batch(
    distances: Tensor,
    labels: Tensor,
    ref_labels: Tensor | None,
    positive_index: tuple[Tensor, Tensor] | None = None,
) -> BatchInput:
    """A :class:`BatchInput` for an already computed (B, M) distance matrix."""
    self_case = ref_labels is None
    ref = labels if self_case else ref_labels
    if positive_index is None:
        positive_index = positive_index_matrix(labels, ref_labels)
    positives, positive_mask = positive_index
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
        graph=distances,
    )


def empty_batch_terms(batch: BatchInput) -> tuple[Tensor, Tensor]:
    """Per-anchor zero losses still attached to the graph (zero gradient), and zero counts."""
    if batch.distances.requires_grad or batch.embeddings is None:
        zero = batch.distances.sum(1) * 0
    else:  # the distances were computed without autograd: attach to the embeddings instead
        zero = batch.embeddings.sum(1) * 0 + batch.ref_embeddings.sum() * 0
    return zero, torch.zeros(batch.num_anchors, dtype=torch.long, device=zero.device)


def row_chunks(n_rows: int, bytes_per_row: int, budget: int) -> Iterator[slice]:
    """Slices of at most ``budget // bytes_per_row`` rows (at least one) covering ``n_rows``."""
    step = max(1, int(budget) // max(1, int(bytes_per_row)))
    for start in range(0, n_rows, step):
        yield slice(start, min(n_rows, start + step))
