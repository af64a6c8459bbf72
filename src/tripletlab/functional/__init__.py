"""Pure tensor maths of tripletlab: distances, losses, mining selections and reductions."""

from tripletlab.functional.distances import METRICS, distance, pairwise_distances, safe_sqrt
from tripletlab.functional.reductions import REDUCTIONS, reduce_loss
from tripletlab.functional.smoothing import smooth_hinge

__all__ = [
    "METRICS",
    "REDUCTIONS",
    "distance",
    "pairwise_distances",
    "reduce_loss",
    "safe_sqrt",
    "smooth_hinge",
]
