"""Evaluation: retrieval and verification metrics, kNN backends."""
