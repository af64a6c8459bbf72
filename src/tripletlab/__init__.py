"""tripletlab: deep metric learning with the triplet loss, on PyTorch.

Functional forms live in :mod:`tripletlab.functional`; loss modules, networks and tools are
exported here, e.g. ``tripletlab.TripletMarginLoss`` or ``tripletlab.BatchAllTripletLoss``.

The exported names are imported lazily (PEP 562 module ``__getattr__``): ``import tripletlab``
itself loads neither torch nor scikit-learn, so the torch-free parts (``tripletlab.deploy``'s
recognizer, ``tripletlab.errors``) stay light, and the CLI starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tripletlab.errors import (
    ArgumentTypeError,
    ConfigError,
    DataError,
    InvalidArgumentError,
    TripletlabError,
)

if TYPE_CHECKING:  # for type checkers and IDEs; at run time these come from __getattr__
    from tripletlab.data.distributed_sampler import DistributedPKSampler
    from tripletlab.data.sampler import PKSampler
    from tripletlab.deploy.run_loading import LoadedRun, load_run
    from tripletlab.estimator import TripletEmbedder
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

#: Exported name → the module that defines it (imported on first access).
_LAZY: dict[str, str] = {
    "BatchAllTripletLoss": "tripletlab.nn.batch_losses",
    "BatchHardTripletLoss": "tripletlab.nn.batch_losses",
    "BatchSemiHardTripletLoss": "tripletlab.nn.batch_losses",
    "BatchContrastiveLoss": "tripletlab.nn.losses",
    "ContrastiveLoss": "tripletlab.nn.losses",
    "TripletMarginLoss": "tripletlab.nn.losses",
    "MLP": "tripletlab.nn.networks",
    "ConvNet": "tripletlab.nn.networks",
    "build_model": "tripletlab.nn.networks",
    "embed_triplets": "tripletlab.nn.networks",
    "BatchLoss": "tripletlab.nn.loss_base",
    "CrossBatchMemory": "tripletlab.nn.xbm",
    "XBMLoss": "tripletlab.nn.xbm",
    "PKSampler": "tripletlab.data.sampler",
    "DistributedPKSampler": "tripletlab.data.distributed_sampler",
    # A trained run as a ready-to-use embedder (model + preprocessing + thresholds).
    "load_run": "tripletlab.deploy.run_loading",
    "LoadedRun": "tripletlab.deploy.run_loading",
    # scikit-learn's import cost is paid only by those who use the estimator.
    "TripletEmbedder": "tripletlab.estimator",
}

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
    "LoadedRun",
    "PKSampler",
    "TripletEmbedder",
    "TripletMarginLoss",
    "TripletlabError",
    "XBMLoss",
    "__version__",
    "build_model",
    "embed_triplets",
    "load_run",
]


#: Sub-packages reachable as attributes after a bare ``import tripletlab`` (as when the
#: eager imports above loaded them).
_SUBMODULES = frozenset({"data", "distributed", "evaluate", "functional", "nn", "train"})


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"tripletlab.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tripletlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: later lookups do not come back here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
