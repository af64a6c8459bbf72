"""tripletlab: deep metric learning with the triplet loss, on PyTorch.

Functional forms live in :mod:`tripletlab.functional`; loss modules, networks and tools are
exported here, e.g. ``tripletlab.TripletMarginLoss`` or ``tripletlab.BatchAllTripletLoss``.
"""

from tripletlab.errors import ConfigError, DataError, TripletlabError

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataError", "TripletlabError", "__version__"]
