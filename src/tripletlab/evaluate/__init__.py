"""Evaluation: retrieval and verification metrics, kNN backends."""

from tripletlab.evaluate.knn import (
    DEFAULT_MEMORY_BUDGET,
    KNNBackend,
    KNNResult,
    TorchKNN,
    iter_knn,
)
from tripletlab.evaluate.retrieval import retrieval_metrics

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "KNNBackend",
    "KNNResult",
    "TorchKNN",
    "iter_knn",
    "retrieval_metrics",
]
