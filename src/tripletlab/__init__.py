"""tripletlab: deep metric learning with the triplet loss, on PyTorch.

Functional forms live in :mod:`tripletlab.functional`; loss modules, networks and tools are
exported here, e.g. ``tripletlab.TripletMarginLoss`` or ``tripletlab.BatchAllTripletLoss``.
"""

from tripletlab.errors import ConfigError, DataError, TripletlabError
from tripletlab.nn.losses import BatchContrastiveLoss, ContrastiveLoss, TripletMarginLoss
from tripletlab.nn.networks import MLP, ConvNet, build_model, embed_triplets

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "BatchContrastiveLoss",
    "ConfigError",
    "ContrastiveLoss",
    "ConvNet",
    "DataError",
    "TripletMarginLoss",
    "TripletlabError",
    "__version__",
    "build_model",
    "embed_triplets",
]
