"""tripletlab: deep metric learning with the triplet loss, on PyTorch.

Functional forms live in :mod:`tripletlab.functional`; loss modules, networks and tools are
exported here, e.g. ``tripletlab.TripletMarginLoss`` or ``tripletlab.BatchAllTripletLoss``.
"""

from tripletlab.data.distributed_sampler import DistributedPKSampler
from tripletlab.data.sampler import PKSampler
from tripletlab.errors import (
    ArgumentTypeError,
    ConfigError,
    DataError,
    InvalidArgumentError,
    TripletlabError,
)
from tripletlab.nn.batch_losses import (
    BatchAllTripletLoss,
    BatchHardTripletLoss,
    BatchSemiHardTripletLoss,
)
from tripletlab.nn.loss_base import BatchLoss
from tripletlab.nn.losses import BatchContrastiveLoss, ContrastiveLoss, TripletMarginLoss
from tripletlab.nn.networks import MLP, ConvNet, build_model, embed_triplets
from tripletlab.nn.xbm import CrossBatchMemory, XBMLoss

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "ArgumentTypeError",
    "BatchAllTripletLoss",
    "BatchContrastiveLoss",
    "BatchHardTripletLoss",
    "BatchLoss",
    "BatchSemiHardTripletLoss",
    "ConfigError",
    "ContrastiveLoss",
    "ConvNet",
    "CrossBatchMemory",
    "DataError",
    "DistributedPKSampler",
    "InvalidArgumentError",
    "PKSampler",
    "TripletEmbedder",
    "TripletMarginLoss",
    "TripletlabError",
    "XBMLoss",
    "__version__",
    "build_model",
    "embed_triplets",
]


def __getattr__(name: str):
    # TripletEmbedder is imported lazily: it pulls in scikit-learn, whose import cost
    # `import tripletlab` (and every CLI start) should not pay.
    if name == "TripletEmbedder":
        from tripletlab.estimator import TripletEmbedder

        return TripletEmbedder
    raise AttributeError(f"module 'tripletlab' has no attribute {name!r}")
