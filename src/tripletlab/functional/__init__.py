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
from tripletlab.functional.batch_all import batch_all_triplet_loss
from tripletlab.functional.batch_hard import batch_hard_triplet_loss
from tripletlab.functional.batch_semi_hard import batch_semi_hard_triplet_loss
from tripletlab.functional.classification_losses import (
    cross_entropy,
    entropy,
    focal_loss,
    information,
)
from tripletlab.functional.contrastive import batch_contrastive_loss, contrastive_loss
from tripletlab.functional.distances import METRICS, distance, pairwise_distances, safe_sqrt
from tripletlab.functional.mining import mine_triplets
from tripletlab.functional.positives import positive_index_matrix
from tripletlab.functional.reductions import REDUCTIONS, reduce_loss
from tripletlab.functional.regression_losses import huber_loss, mae_loss, mse_loss, rmse_loss
from tripletlab.functional.similarity_losses import cosine_loss
from tripletlab.functional.smoothing import smooth_hinge
from tripletlab.functional.triplet import triplet_margin_loss
from tripletlab.functional.triplet_types import TripletCounts, TripletStats, classify_triplets

__all__ = [
    "METRICS",
    "REDUCTIONS",
    "TripletCounts",
    "TripletStats",
    "batch_all_triplet_loss",
    "batch_contrastive_loss",
    "batch_hard_triplet_loss",
    "batch_semi_hard_triplet_loss",
    "classify_triplets",
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
    "mine_triplets",
    "mse_loss",
    "pairwise_distances",
    "positive_index_matrix",
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
