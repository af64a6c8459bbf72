"""Evaluation: retrieval and verification metrics, kNN backends."""

from tripletlab.evaluate.knn import DEFAULT_MEMORY_BUDGET, KNNBackend, KNNResult, TorchKNN

__all__ = ["DEFAULT_MEMORY_BUDGET", "KNNBackend", "KNNResult", "TorchKNN"]
