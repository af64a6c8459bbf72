"""Thin nn.Module wrappers over :mod:`tripletlab.functional`, activations and networks."""

from tripletlab.nn.activations import (
    ELU,
    SELU,
    FastSigmoid,
    LeakyReLU,
    PReLU,
    ReLU,
    ReLU6,
    RReLU,
    Sigmoid,
    Tanh,
    get_activation,
)
from tripletlab.nn.batch_losses import (
    BatchAllTripletLoss,
    BatchHardTripletLoss,
    BatchSemiHardTripletLoss,
)
from tripletlab.nn.losses import BatchContrastiveLoss, ContrastiveLoss, TripletMarginLoss
from tripletlab.nn.networks import MLP, ConvNet, build_model, embed_triplets
from tripletlab.nn.xbm import CrossBatchMemory, XBMLoss

__all__ = [
    "ELU",
    "MLP",
    "SELU",
    "BatchAllTripletLoss",
    "BatchContrastiveLoss",
    "BatchHardTripletLoss",
    "BatchSemiHardTripletLoss",
    "ContrastiveLoss",
    "ConvNet",
    "CrossBatchMemory",
    "FastSigmoid",
    "LeakyReLU",
    "PReLU",
    "RReLU",
    "ReLU",
    "ReLU6",
    "Sigmoid",
    "Tanh",
    "TripletMarginLoss",
    "XBMLoss",
    "build_model",
    "embed_triplets",
    "get_activation",
]
