"""Building a run's parts by name (:mod:`~tripletlab.pipeline.registries`): the loss, the
network, the optimiser, the learning-rate schedule and the kNN backend.

Example:
    >>> from tripletlab.pipeline.factories import build_loss, OPTIMIZERS
    >>> OPTIMIZERS["adam"].__name__
    'Adam'
    >>> build_loss("batch-hard", margin=0.1)
    BatchHardTripletLoss(margin=0.1, metric='sqeuclidean', smoothing=None, reduction='mean_active')
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tripletlab.errors import ConfigError, InvalidArgumentError
from tripletlab.nn.batch_losses import (
    BatchAllTripletLoss,
    BatchHardTripletLoss,
    BatchSemiHardTripletLoss,
)
from tripletlab.nn.loss_base import BatchLoss
from tripletlab.nn.losses import BatchContrastiveLoss
from tripletlab.nn.networks import build_model
from tripletlab.pipeline.registries import (
    BACKEND_NAMES,
    LOSS_NAMES,
    METRIC_NAMES,
    OPTIMIZER_NAMES,
    REDUCTION_NAMES,
    SCHEDULER_NAMES,
    LossName,
    OptimizerName,
)
from tripletlab.validation import check_choice

if TYPE_CHECKING:
    from tripletlab.evaluate.knn import KNNBackend

__all__ = [
    "LOSSES",
    "OPTIMIZERS",
    "build_backend",
    "build_loss",
    "build_network",
    "build_optimizer",
    "build_scheduler",
    "build_warmup_scheduler",
]

#: Warm-up starts at this fraction of the learning rate (as in Goyal et al. 2017).
WARMUP_START_FACTOR = 0.1

#: ``--loss`` names and the batch-loss module each builds.
LOSSES: dict[LossName, type[BatchLoss]] = {
    "batch-all": BatchAllTripletLoss,
    "batch-hard": BatchHardTripletLoss,
    "semi-hard": BatchSemiHardTripletLoss,
    "contrastive": BatchContrastiveLoss,
}

#: ``--optimizer`` names and their torch classes.
OPTIMIZERS: dict[OptimizerName, Callable[..., torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}


def build_loss(
    name: str,
    margin: float = 0.2,
    metric: str = "sqeuclidean",
    smoothing: float | None = None,
    reduction: str = "mean_active",
) -> BatchLoss:
    """A batch loss ``loss(embeddings, labels)`` by its CLI name (see :data:`LOSSES`).

    The triplet losses take every argument; the contrastive loss (Hadsell form over all
    pairs of the batch) has no smoothing.
    """
    key = check_choice(name, "loss", LOSS_NAMES)
    if LOSSES[key] is BatchContrastiveLoss:
        if smoothing:
            raise InvalidArgumentError("smoothing is not available for the contrastive loss")
        # The Hadsell form squares the distance itself (y·d² + (1−y)·[m − d]₊²): the run's
        # default "sqeuclidean" would make positives pull with ‖·‖⁴, so it means "euclidean" here.
        pair_metric = check_choice(metric, "metric", METRIC_NAMES)
        return BatchContrastiveLoss(
            margin=margin,
            metric="euclidean" if pair_metric == "sqeuclidean" else pair_metric,
            reduction=check_choice(reduction, "reduction", REDUCTION_NAMES),
        )
    triplet_loss: type[Any] = LOSSES[key]
    built: BatchLoss = triplet_loss(
        margin=margin, metric=metric, smoothing=smoothing, reduction=reduction
    )
    return built


def build_network(
    name: str,
    in_shape: Sequence[int],
    embedding_dim: int,
    hidden: Sequence[int] = (128,),
    activation: str = "relu",
    dropout: float = 0.0,
) -> nn.Module:
    """``mlp`` (hidden widths ``hidden``) or ``cnn`` (the small ConvNet; its fully connected
    width is ``hidden[0]`` when given; ``dropout`` is the MLP's) mapping one sample of
    ``in_shape`` to ``embedding_dim``. L2 normalisation is left to the Trainer."""
    kwargs: dict[str, Any] = {"activation": activation}
    if name == "mlp":
        kwargs["hidden"] = tuple(hidden)
        kwargs["dropout"] = dropout
    elif hidden:
        kwargs["hidden"] = int(hidden[0])
    return build_model(name, tuple(in_shape), embedding_dim, **kwargs)


def build_optimizer(
    name: str,
    params: Iterable[nn.Parameter],
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """``sgd`` (with ``momentum``), ``adam`` or ``adamw`` (:data:`OPTIMIZERS`)."""
    key = check_choice(name, "optimizer", OPTIMIZER_NAMES)
    if key == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return OPTIMIZERS[key](params, lr=lr, weight_decay=weight_decay)


def build_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    step_size: int = 10,
    gamma: float = 0.1,
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A per-epoch learning-rate schedule: ``none``, ``cosine`` (to 0 over ``epochs``) or
    ``step`` (× ``gamma`` every ``step_size`` epochs). Built-in schedulers only, so their
    state dicts hold primitives and load with ``weights_only=True``."""
    key = check_choice(name, "scheduler", SCHEDULER_NAMES)
    if key == "none":
        return None
    if key == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)


def build_warmup_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    *,
    warmup_epochs: int = 0,
    start_factor: float = WARMUP_START_FACTOR,
    step_size: int = 10,
    gamma: float = 0.1,
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """``name`` (none | cosine | step, see :func:`build_scheduler`)
    after a linear warm-up of ``warmup_epochs`` epochs from ``lr × start_factor`` to ``lr``.

    Built from torch's own ``LinearLR`` / ``SequentialLR``, so their state dicts hold
    primitives only and load with ``weights_only=True``.

    Example:
        >>> opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> sched = build_warmup_scheduler("cosine", opt, epochs=5, warmup_epochs=2)
        >>> lrs = []
        >>> for _ in range(5):
        ...     lrs.append(round(opt.param_groups[0]["lr"], 3)); opt.step(); sched.step()
        >>> lrs
        [0.1, 0.55, 1.0, 0.75, 0.25]
    """
    if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
        raise ConfigError(f"warmup_epochs must be an integer >= 0; got {warmup_epochs!r}")
    if warmup_epochs == 0:
        return build_scheduler(name, optimizer, epochs, step_size=step_size, gamma=gamma)
    if warmup_epochs >= epochs:
        raise ConfigError(f"warmup_epochs ({warmup_epochs}) must be < epochs ({epochs})")
    if not 0 < start_factor <= 1:
        raise ConfigError(f"warm-up start_factor must be in (0, 1]; got {start_factor!r}")
    warmup = torch.optim.lr_scheduler.LinearLR(
        optimizer, start_factor=start_factor, end_factor=1.0, total_iters=warmup_epochs
    )
    after = build_scheduler(
        name, optimizer, epochs - warmup_epochs, step_size=step_size, gamma=gamma
    )
    if after is None:
        return warmup
    return torch.optim.lr_scheduler.SequentialLR(
        optimizer, schedulers=[warmup, after], milestones=[warmup_epochs]
    )


def build_backend(name: str) -> KNNBackend:
    """The kNN backend called ``name`` (:data:`BACKEND_NAMES`); faiss loads lazily."""
    key = check_choice(name, "backend", BACKEND_NAMES)
    if key == "torch":
        from tripletlab.evaluate.knn import TorchKNN

        return TorchKNN()
    from tripletlab.evaluate.knn_faiss import FaissKNN

    return FaissKNN(key.removeprefix("faiss-"))
