"""Loss modules over :mod:`tripletlab.functional`: explicit triplets and pairs.

Constructor arguments are validated at once, so a bad margin or metric fails where the loss is
built, not at the first training step.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from typing import get_args

from torch import Tensor, nn

from tripletlab.functional.contrastive import (
    ContrastiveForm,
    batch_contrastive_loss,
    contrastive_loss,
)
from tripletlab.functional.distances import Metric
from tripletlab.functional.reductions import Reduction
from tripletlab.functional.triplet import triplet_margin_loss
from tripletlab.nn.loss_base import BatchLoss
from tripletlab.validation import check_choice, check_nonnegative, check_smoothing

__all__ = [
    "BatchContrastiveLoss",
    "ContrastiveLoss",
    "PairStats",
    "TripletMarginLoss",
]

# The allowed names, typed as their Literal (so checked values keep that type).
_METRICS: tuple[Metric, ...] = get_args(Metric)
_REDUCTIONS: tuple[Reduction, ...] = get_args(Reduction)
_FORMS: tuple[ContrastiveForm, ...] = get_args(ContrastiveForm)


class TripletMarginLoss(nn.Module):
    """Triplet margin loss on explicit triplets, called as ``loss(anchor, positive, negative)``.

    ``ℓ_i = h(D(a_i, p_i) − D(a_i, n_i) + margin)`` with the hinge (``smoothing`` None) or
    ``μ·softplus(x/μ)``; default squared euclidean distance and margin 0.2 (FaceNet). See
    :func:`tripletlab.functional.triplet_margin_loss`.

    Inputs:
        anchor, positive, negative: (N, D) floating tensors (one shared network's output).

    Example:
        >>> import torch
        >>> loss = TripletMarginLoss(margin=0.2)
        >>> a, p, n = torch.randn(3, 8, 16).unbind(0)
        >>> loss(a, p, n).shape
        torch.Size([])
    """

    def __init__(
        self,
        margin: float = 0.2,
        metric: Metric = "sqeuclidean",
        smoothing: float | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        self.margin = check_nonnegative(margin, "margin")
        self.metric = check_choice(metric, "metric", _METRICS)
        self.smoothing = check_smoothing(smoothing)
        self.reduction = check_choice(reduction, "reduction", _REDUCTIONS)

    def forward(self, anchor: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        return triplet_margin_loss(
            anchor,
            positive,
            negative,
            margin=self.margin,
            metric=self.metric,
            smoothing=self.smoothing,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, metric={self.metric!r}, smoothing={self.smoothing}, "
            f"reduction={self.reduction!r}"
        )


class _ContrastiveSettings(nn.Module):
    """The validated settings shared by the pair and the batch contrastive modules."""

    def __init__(
        self, margin: float, form: ContrastiveForm, metric: Metric, reduction: Reduction
    ) -> None:
        super().__init__()
        self.margin = check_nonnegative(margin, "margin")
        self.form = check_choice(form, "form", _FORMS)
        self.metric = check_choice(metric, "metric", _METRICS)
        self.reduction = check_choice(reduction, "reduction", _REDUCTIONS)

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, form={self.form!r}, metric={self.metric!r}, "
            f"reduction={self.reduction!r}"
        )


class ContrastiveLoss(_ContrastiveSettings):
    """Contrastive loss on explicit pairs, called as ``loss(x1, x2, same)``.

    ``hadsell``: ``y·d² + (1 − y)·[m − d]₊²``; ``squared``: ``y·d² + (1 − y)·[m − d²]₊``.
    See :func:`tripletlab.functional.contrastive_loss`.

    Example:
        >>> import torch
        >>> loss = ContrastiveLoss(margin=1.0)
        >>> loss(torch.zeros(2, 3), torch.ones(2, 3), torch.tensor([1, 0]))
        tensor(1.5000)
    """

    def __init__(
        self,
        margin: float = 1.0,
        form: ContrastiveForm = "hadsell",
        metric: Metric = "euclidean",
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(margin, form, metric, reduction)

    def forward(self, x1: Tensor, x2: Tensor, same: Tensor) -> Tensor:
        return contrastive_loss(
            x1,
            x2,
            same,
            margin=self.margin,
            form=self.form,
            metric=self.metric,
            reduction=self.reduction,
        )


@dataclass(frozen=True)
class PairStats:
    """Per-step statistics of a batch pair loss, as detached 0-dim tensors (no host sync).

    Fields: ``positive_pairs`` and ``negative_pairs`` (pairs i < j of the batch),
    ``active_pairs`` (pairs with loss > 0) and ``active_fraction`` (over all pairs; 0 for a
    batch of fewer than two samples). ``stats["positive_pairs"]`` also works (the dict the
    module returned before).
    """

    positive_pairs: Tensor
    negative_pairs: Tensor
    active_pairs: Tensor
    active_fraction: Tensor

    def as_dict(self) -> dict[str, float]:
        """All fields as Python floats (one host read per field)."""
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}

    def __getitem__(self, key: str) -> Tensor:
        if key not in {f.name for f in fields(self)}:
            raise KeyError(key)
        value: Tensor = getattr(self, key)
        return value


class BatchContrastiveLoss(_ContrastiveSettings, BatchLoss):
    """Contrastive loss over all pairs i < j of a batch, called as ``loss(embeddings, labels)``.

    See :func:`tripletlab.functional.batch_contrastive_loss`. ``loss(embeddings, labels,
    return_stats=True)`` returns ``(loss, PairStats)``, like every batch loss. The
    constructor argument ``return_stats`` is deprecated (it made every call return stats).

    Example:
        >>> import torch
        >>> loss = BatchContrastiveLoss(margin=1.0)
        >>> x, y = torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        >>> value, stats = loss(x, y, return_stats=True)
        >>> value.shape, int(stats.positive_pairs)
        (torch.Size([]), 4)
    """

    def __init__(
        self,
        margin: float = 1.0,
        form: ContrastiveForm = "hadsell",
        metric: Metric = "euclidean",
        reduction: Reduction = "mean",
        return_stats: bool | None = None,
    ) -> None:
        super().__init__(margin, form, metric, reduction)
        if return_stats is not None:
            warnings.warn(
                "BatchContrastiveLoss(return_stats=...) is deprecated; pass return_stats to "
                "the call instead: loss(embeddings, labels, return_stats=True)",
                DeprecationWarning,
                stacklevel=2,
            )
        self.return_stats = bool(return_stats)

    def forward(
        self, embeddings: Tensor, labels: Tensor, return_stats: bool | None = None
    ) -> Tensor | tuple[Tensor, PairStats]:
        """The loss of ``embeddings`` (B, D) with ``labels`` (B,); ``(loss, PairStats)``
        when ``return_stats`` (default: the deprecated constructor setting, else False)."""
        wanted = self.return_stats if return_stats is None else bool(return_stats)
        output = batch_contrastive_loss(
            embeddings,
            labels,
            margin=self.margin,
            form=self.form,
            metric=self.metric,
            reduction=self.reduction,
            return_stats=wanted,
        )
        if isinstance(output, Tensor):
            return output
        loss, stats = output
        return loss, PairStats(**stats)
