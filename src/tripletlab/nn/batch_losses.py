"""Batch triplet-loss modules with online mining, called as ``loss(embeddings, labels)``.

Thin wrappers over :mod:`tripletlab.functional`'s batch losses; constructor arguments are
validated at once. Optional ``ref_embeddings, ref_labels`` take anchors from the batch and
positives/negatives from a reference set (e.g. a cross-batch memory), as in
pytorch-metric-learning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from tripletlab.functional._batch_input import DEFAULT_MEMORY_BUDGET
from tripletlab.functional.batch_all import batch_all_triplet_loss
from tripletlab.functional.batch_hard import batch_hard_triplet_loss
from tripletlab.functional.batch_semi_hard import FALLBACKS, batch_semi_hard_triplet_loss
from tripletlab.functional.distances import METRICS
from tripletlab.functional.reductions import REDUCTIONS
from tripletlab.functional.triplet_types import TripletStats
from tripletlab.nn.loss_base import BatchLoss
from tripletlab.validation import (
    check_choice,
    check_nonnegative,
    check_positive,
    check_smoothing,
)


class _BatchTripletLoss(BatchLoss):
    def __init__(self, margin: float, metric: str, smoothing: float | None, reduction: str) -> None:
        super().__init__()
        self.margin = check_nonnegative(margin, "margin")
        self.metric = check_choice(metric, "metric", METRICS)
        self.smoothing = check_smoothing(smoothing)
        self.reduction = check_choice(reduction, "reduction", REDUCTIONS)

    # the functional form this module wraps, and its extra keyword arguments
    _loss_function: Callable[..., Tensor | tuple[Tensor, TripletStats]]

    def _options(self) -> dict[str, Any]:
        return {}

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        ref_embeddings: Tensor | None = None,
        ref_labels: Tensor | None = None,
        return_stats: bool = False,
    ) -> Tensor | tuple[Tensor, TripletStats]:
        """The loss of ``embeddings`` (B, D) with integer ``labels`` (B,); anchors against
        ``ref_embeddings``/``ref_labels`` when given; ``(loss, TripletStats)`` with
        ``return_stats=True``."""
        return type(self)._loss_function(
            embeddings,
            labels,
            margin=self.margin,
            metric=self.metric,
            smoothing=self.smoothing,
            reduction=self.reduction,
            ref_embeddings=ref_embeddings,
            ref_labels=ref_labels,
            return_stats=return_stats,
            **self._options(),
        )

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, metric={self.metric!r}, smoothing={self.smoothing}, "
            f"reduction={self.reduction!r}"
        )


class BatchAllTripletLoss(_BatchTripletLoss):
    """Triplet loss over every valid triplet of the batch, exact in O(B² log K).

    ``h(d_ap − d_an + m)`` over all (a, p, n) of the batch; see
    :func:`tripletlab.functional.batch_all_triplet_loss`. Default reduction ``"mean_active"``
    (PML's AvgNonZeroReducer); squared euclidean distance, margin 0.2 (FaceNet).

    Inputs: ``embeddings`` (B, D), ``labels`` (B,) integers; optional ``ref_embeddings``
    (M, D), ``ref_labels`` (M,); ``return_stats=True`` returns ``(loss, TripletStats)``.

    Example:
        >>> import torch
        >>> loss_fn = BatchAllTripletLoss(margin=0.2)
        >>> x = torch.randn(32, 16, requires_grad=True)
        >>> loss = loss_fn(x, torch.arange(32) % 8)
        >>> loss.backward()
    """

    def __init__(
        self,
        margin: float = 0.2,
        metric: str = "sqeuclidean",
        smoothing: float | None = None,
        reduction: str = "mean_active",
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
    ) -> None:
        super().__init__(margin, metric, smoothing, reduction)
        self.memory_budget = int(check_positive(memory_budget, "memory_budget"))

    _loss_function = batch_all_triplet_loss

    def _options(self) -> dict[str, Any]:
        return {"memory_budget": self.memory_budget}


class BatchHardTripletLoss(_BatchTripletLoss):
    """Batch-hard triplet loss (Hermans et al. 2017): hardest positive and negative per anchor.

    See :func:`tripletlab.functional.batch_hard_triplet_loss`. ``smoothing=1, margin=0`` is
    the paper's soft margin. Default reduction ``"mean"`` over anchors with a triplet.

    Example:
        >>> import torch
        >>> loss_fn = BatchHardTripletLoss(margin=0.0, smoothing=1.0)  # soft margin
        >>> x = torch.randn(32, 16, requires_grad=True)
        >>> loss_fn(x, torch.arange(32) % 8).backward()
    """

    def __init__(
        self,
        margin: float = 0.2,
        metric: str = "sqeuclidean",
        smoothing: float | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(margin, metric, smoothing, reduction)

    _loss_function = batch_hard_triplet_loss


class BatchSemiHardTripletLoss(_BatchTripletLoss):
    """FaceNet's semi-hard triplet loss: per (a, p), the closest negative farther than p.

    See :func:`tripletlab.functional.batch_semi_hard_triplet_loss`; ``fallback`` is
    ``"hardest"`` (default), ``"easiest"`` (TF-Addons) or ``"skip"``. Default reduction
    ``"mean"`` over anchor–positive pairs.

    Example:
        >>> import torch
        >>> loss_fn = BatchSemiHardTripletLoss(margin=0.2, fallback="easiest")
        >>> x = torch.randn(32, 16, requires_grad=True)
        >>> loss_fn(x, torch.arange(32) % 8).backward()
    """

    def __init__(
        self,
        margin: float = 0.2,
        metric: str = "sqeuclidean",
        smoothing: float | None = None,
        fallback: str = "hardest",
        reduction: str = "mean",
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
    ) -> None:
        super().__init__(margin, metric, smoothing, reduction)
        self.fallback = check_choice(fallback, "fallback", FALLBACKS)
        self.memory_budget = int(check_positive(memory_budget, "memory_budget"))

    _loss_function = batch_semi_hard_triplet_loss

    def _options(self) -> dict[str, Any]:
        return {"fallback": self.fallback, "memory_budget": self.memory_budget}

    def extra_repr(self) -> str:
        return super().extra_repr() + f", fallback={self.fallback!r}"
