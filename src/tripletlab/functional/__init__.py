"""Pure tensor maths of tripletlab: distances, losses, mining selections and reductions."""

from tripletlab.functional.activations import (
    elu,
    fast_sigmoid,
    leaky_relu,
    prelu,
    relu,
    relu6,
    rrelu,
    selu,
    sigmoid,
    tanh,
)
from tripletlab.functional.classification_losses import (
    cross_entropy,
    entropy,
    focal_loss,
    information,
)
from tripletlab.functional.contrastive import batch_contrastive_loss, contrastive_loss
from tripletlab.functional.distances import METRICS, distance, pairwise_distances, safe_sqrt
from tripletlab.functional.reductions import REDUCTIONS, reduce_loss
from tripletlab.functional.regression_losses import huber_loss, mae_loss, mse_loss, rmse_loss
from tripletlab.functional.similarity_losses import cosine_loss
from tripletlab.functional.smoothing import smooth_hinge
from tripletlab.functional.triplet import triplet_margin_loss

__all__ = [
    "METRICS",
    "REDUCTIONS",
    "batch_contrastive_loss",
    "contrastive_loss",
    "cosine_loss",
    "cross_entropy",
    "distance",
    "elu",
    "entropy",
    "fast_sigmoid",
    "focal_loss",
    "huber_loss",
    "information",
    "leaky_relu",
    "mae_loss",
    "mse_loss",
    "pairwise_distances",
    "prelu",
    "reduce_loss",
    "relu",
    "relu6",
    "rmse_loss",
    "rrelu",
    "safe_sqrt",
    "selu",
    "sigmoid",
    "smooth_hinge",
    "tanh",
    "triplet_margin_loss",
]
