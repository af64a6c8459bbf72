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

from tripletlab.functional.distances import METRICS, pairwise_distances, row_distance, safe_sqrt
from tripletlab.functional.positives import positive_index_matrix
from tripletlab.validation import (
    check_choice,
    check_embeddings,
    check_labels,
    check_nonnegative,
    check_smoothing,
    compute_dtype,
)

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
) -> BatchInput:
    """Validate a batch, compute its distance matrix and positive index.

    With ``differentiable=False`` the distance matrix is computed without autograd: losses
    that depend on a few selected distances only (batch-hard, semi-hard) select with it and
    recompute the selected distances from the embeddings (:meth:`BatchInput.pair_distances`),
    so their backward pass is O(B·D) instead of a B×B matrix and two GEMMs.
    """
    embeddings = check_embeddings(embeddings, "embeddings")
    labels = check_labels(labels, embeddings.shape[0]).long()
    if (ref_embeddings is None) != (ref_labels is None):
        raise ValueError("ref_embeddings and ref_labels must be given together")
    self_case = ref_embeddings is None
    if self_case:
        ref = labels
    else:
        ref_embeddings = check_embeddings(ref_embeddings, "ref_embeddings")
        ref = check_labels(ref_labels, ref_embeddings.shape[0], "ref_labels").long()
        if ref.device != labels.device:
            raise ValueError("labels and ref_labels must be on the same device")
        if ref_embeddings.shape[1] != embeddings.shape[1]:
            raise ValueError(
                "embeddings and ref_embeddings must have the same dimension; got "
                f"{embeddings.shape[1]} and {ref_embeddings.shape[1]}"
            )
    with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
        distances = batch_distances(embeddings, metric, ref_embeddings)
    batch = index_batch(distances, labels, None if self_case else ref)
    dtype = distances.dtype
    columns = embeddings if self_case else ref_embeddings
    return replace(
        batch, embeddings=embeddings.to(dtype), ref_embeddings=columns.to(dtype), metric=metric
    )


def batch_distances(embeddings: Tensor, metric: str, ref_embeddings: Tensor | None) -> Tensor:
    """The (B, M) distance matrix; the batch against itself gets a leaner backward pass.

    For ``"sqeuclidean"``/``"euclidean"`` without a reference set the values are those of
    :func:`~tripletlab.functional.pairwise_distances` up to rounding (exact for small integer
    embeddings) from a single augmented GEMM, and the backward pass is written from ``∂L/∂x_a = 2 Σ_n (G_an + G_na)(x_a − x_n)``: two GEMMs and two row/column
    sums, without autograd's clamp and diagonal-mask passes over B×B tensors.
    """
    if ref_embeddings is not None or metric == "cosine" or embeddings.shape[0] == 0:
        return pairwise_distances(embeddings, ref_embeddings, metric=metric)
    x = embeddings.to(compute_dtype(embeddings))
    squared = _SelfSquaredDistances.apply(x)
    return squared if metric == "sqeuclidean" else safe_sqrt(squared)


class _SelfSquaredDistances(torch.autograd.Function):
    """‖x_a − x_n‖² for all pairs of rows of x, with a symmetric one-GEMM backward."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        # centre (distances are unchanged, cancellation is not), then one GEMM of the
        # augmented rows [x, ‖x‖², 1]·[−2x, 1, ‖x‖²]ᵀ = ‖x_a‖² + ‖x_n‖² − 2⟨x_a, x_n⟩: no B×B
        # broadcast passes before the clamp
        xc = x - x.mean(dim=0, keepdim=True)
        sq = (xc * xc).sum(dim=1, keepdim=True)
        ones = torch.ones_like(sq)
        left = torch.cat([xc, sq, ones], dim=1)
        right = torch.cat([xc * -2, ones, sq], dim=1)
        squared = torch.mm(left, right.T).clamp_min_(0)
        squared.fill_diagonal_(0)
        ctx.save_for_backward(xc)
        return squared

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (xc,) = ctx.saved_tensors
        # (G + Gᵀ) x as two GEMMs: cheaper than materialising the transposed sum
        row_weight = grad.sum(1) + grad.sum(0)
        return 2 * (row_weight[:, None] * xc - torch.addmm(grad @ xc, grad.T, xc))


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
