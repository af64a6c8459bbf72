"""Loss modules over :mod:`tripletlab.functional`: explicit triplets and pairs.

Constructor arguments are validated at once, so a bad margin or metric fails where the loss is
built, not at the first training step.
"""

from __future__ import annotations

from torch import Tensor, nn

from tripletlab.functional.contrastive import (
    CONTRASTIVE_FORMS,
    ContrastiveForm,
    batch_contrastive_loss,
    contrastive_loss,
)
from tripletlab.functional.distances import METRICS, Metric
from tripletlab.functional.reductions import REDUCTIONS, Reduction
from tripletlab.functional.triplet import triplet_margin_loss
from tripletlab.validation import (
    check_choice,
    check_nonnegative,
    check_smoothing,
)


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
        self.metric = check_choice(metric, "metric", METRICS)
        self.smoothing = check_smoothing(smoothing)
        self.reduction = check_choice(reduction, "reduction", REDUCTIONS)

    def forward(self, anchor: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        return triplet_margin_loss(
            anchor,
            positive,
            negative,
            margin=self.margin,
            metric=self.metric,  # type: ignore[arg-type]
            smoothing=self.smoothing,
            reduction=self.reduction,  # type: ignore[arg-type]
        )

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, metric={self.metric!r}, smoothing={self.smoothing}, "
            f"reduction={self.reduction!r}"
        )


class ContrastiveLoss(nn.Module):
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
        super().__init__()
        self.margin = check_nonnegative(margin, "margin")
        self.form = check_choice(form, "form", CONTRASTIVE_FORMS)
        self.metric = check_choice(metric, "metric", METRICS)
        self.reduction = check_choice(reduction, "reduction", REDUCTIONS)

    def forward(self, x1: Tensor, x2: Tensor, same: Tensor) -> Tensor:
        return contrastive_loss(
            x1,
            x2,
            same,
            margin=self.margin,
            form=self.form,  # type: ignore[arg-type]
            metric=self.metric,  # type: ignore[arg-type]
            reduction=self.reduction,  # type: ignore[arg-type]
        )

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, form={self.form!r}, metric={self.metric!r}, "
            f"reduction={self.reduction!r}"
        )


class BatchContrastiveLoss(ContrastiveLoss):
    """Contrastive loss over all pairs i < j of a batch, called as ``loss(embeddings, labels)``.

    See :func:`tripletlab.functional.batch_contrastive_loss`. With ``return_stats=True`` the
    call returns ``(loss, stats)`` (pair counts and the active fraction, 0-dim tensors).

    Example:
        >>> import torch
        >>> loss = BatchContrastiveLoss(margin=1.0)
        >>> loss(torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])).shape
        torch.Size([])
    """

    def __init__(
        self,
        margin: float = 1.0,
        form: ContrastiveForm = "hadsell",
        metric: Metric = "euclidean",
        reduction: Reduction = "mean",
        return_stats: bool = False,
    ) -> None:
        super().__init__(margin=margin, form=form, metric=metric, reduction=reduction)
        self.return_stats = bool(return_stats)

    def forward(  # type: ignore[override]
        self, embeddings: Tensor, labels: Tensor
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        return batch_contrastive_loss(
            embeddings,
            labels,
            margin=self.margin,
            form=self.form,  # type: ignore[arg-type]
            metric=self.metric,  # type: ignore[arg-type]
            reduction=self.reduction,  # type: ignore[arg-type]
            return_stats=self.return_stats,
        )
