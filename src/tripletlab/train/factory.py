"""Building a run's parts by name: the loss (``--loss``) and the network (``--model``).

Example:
    >>> from tripletlab.train.factory import build_loss
    >>> build_loss("batch-hard", margin=0.1)
    BatchHardTripletLoss(margin=0.1, metric='sqeuclidean', smoothing=None, reduction='mean_active')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

__all__ = ["LOSS_NAMES", "build_loss", "build_network"]

#: ``--loss`` names and the tripletlab module each one builds.
LOSS_NAMES = {
    "batch-all": "BatchAllTripletLoss",
    "batch-hard": "BatchHardTripletLoss",
    "semi-hard": "BatchSemiHardTripletLoss",
    "contrastive": "BatchContrastiveLoss",
}


def build_loss(
    name: str,
    margin: float = 0.2,
    metric: str = "sqeuclidean",
    smoothing: float | None = None,
    reduction: str = "mean_active",
) -> nn.Module:
    """A batch loss ``loss(embeddings, labels)`` by its CLI name (see :data:`LOSS_NAMES`).

    The triplet losses take every argument; the contrastive loss (Hadsell form over all
    pairs of the batch) has no smoothing and is built to return its pair statistics.
    """
    import tripletlab

    if name not in LOSS_NAMES:
        raise ValueError(f"loss must be one of {', '.join(map(repr, LOSS_NAMES))}; got {name!r}")
    cls = getattr(tripletlab, LOSS_NAMES[name])
    if name == "contrastive":
        if smoothing:
            raise ValueError("smoothing is not available for the contrastive loss")
        # The Hadsell form squares the distance itself (y·d² + (1−y)·[m − d]₊²): the run's
        # default "sqeuclidean" would make positives pull with ‖·‖⁴, so it means "euclidean" here.
        pair_metric = "euclidean" if metric == "sqeuclidean" else metric
        return cls(margin=margin, metric=pair_metric, reduction=reduction)
    return cls(margin=margin, metric=metric, smoothing=smoothing, reduction=reduction)


def build_network(
    name: str,
    in_shape: Sequence[int],
    embedding_dim: int,
    hidden: Sequence[int] = (128,),
    activation: str = "relu",
    dropout: float = 0.0,
) -> nn.Module:
    """``mlp`` (hidden widths ``hidden``) or ``cnn`` (the small ConvNet; its fully connected
    width is ``hidden[0]`` when given; ``dropout`` is the MLP's) mapping one sample of ``in_shape`` to ``embedding_dim``.
    L2 normalisation is left to the Trainer."""
    from tripletlab.nn.networks import build_model

    kwargs: dict[str, Any] = {"activation": activation}
    if name == "mlp":
        kwargs["hidden"] = tuple(hidden)
        kwargs["dropout"] = dropout
    elif hidden:
        kwargs["hidden"] = int(hidden[0])
    return build_model(name, tuple(in_shape), embedding_dim, **kwargs)
