"""Evaluation: retrieval, clustering and verification metrics, kNN backends."""

from tripletlab.evaluate.approximate import KNN_METHODS, approximation_gap, make_knn_backend
from tripletlab.evaluate.clustering import clustering_metrics
from tripletlab.evaluate.evaluator import evaluate_baseline, evaluate_embeddings
from tripletlab.evaluate.gallery import GalleryIndex, IdentityMatches, verify_pairs
from tripletlab.evaluate.knn import (
    DEFAULT_MEMORY_BUDGET,
    KNNBackend,
    KNNResult,
    TorchKNN,
    iter_knn,
)
from tripletlab.evaluate.knn_faiss import FaissKNN, recall_at_k  # faiss itself loads lazily
from tripletlab.evaluate.retrieval import retrieval_metrics
from tripletlab.evaluate.sharded import shard_range, sharded_retrieval_metrics
from tripletlab.evaluate.verification import evaluate_verification, sample_pairs

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "KNN_METHODS",
    "FaissKNN",
    "GalleryIndex",
    "IdentityMatches",
    "KNNBackend",
    "KNNResult",
    "TorchKNN",
    "approximation_gap",
    "clustering_metrics",
    "evaluate_baseline",
    "evaluate_embeddings",
    "evaluate_verification",
    "iter_knn",
    "make_knn_backend",
    "recall_at_k",
    "retrieval_metrics",
    "sample_pairs",
    "shard_range",
    "sharded_retrieval_metrics",
    "verify_pairs",
]
