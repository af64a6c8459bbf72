"""The names a run is configured with, written once: losses, metrics, reductions, optimisers,
schedulers, kNN backends, models and split protocols.

Each family is a ``Literal`` type (what :class:`~tripletlab.pipeline.config.RunConfig`
validates against) and the tuple of its names; the CLI's choices are these tuples and its
help defaults are ``RunConfig``'s field defaults. This module imports neither torch nor the
losses, so the CLI can offer its choices without loading them; what each name builds is in
:mod:`~tripletlab.pipeline.factories` (``LOSSES``, ``OPTIMIZERS``), and a test checks that
those maps, and the lower layers' own lists (``functional.distances.METRICS``,
``nn.networks.MODEL_NAMES``), have exactly these names.

Example:
    >>> LOSS_NAMES
    ('batch-all', 'batch-hard', 'semi-hard', 'contrastive')
    >>> "cosine" in METRIC_NAMES
    True
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "BACKEND_NAMES",
    "LOSS_NAMES",
    "METRIC_NAMES",
    "MODEL_NAMES",
    "OPTIMIZER_NAMES",
    "REDUCTION_NAMES",
    "SCHEDULER_NAMES",
    "SPLIT_NAMES",
    "BackendName",
    "LossName",
    "Metric",
    "ModelName",
    "OptimizerName",
    "RunReduction",
    "SchedulerName",
    "SplitName",
]

LossName = Literal["batch-all", "batch-hard", "semi-hard", "contrastive"]
LOSS_NAMES: tuple[LossName, ...] = get_args(LossName)

#: ``--metric``: the loss's distance (and the one evaluation ranks by); the names of
#: :data:`tripletlab.functional.distances.Metric`.
Metric = Literal["sqeuclidean", "euclidean", "cosine"]
METRIC_NAMES: tuple[Metric, ...] = get_args(Metric)

# A run's loss is one scalar per step, so the per-element reduction "none" is left out.
RunReduction = Literal["mean", "mean_active", "sum"]
REDUCTION_NAMES: tuple[RunReduction, ...] = get_args(RunReduction)

OptimizerName = Literal["sgd", "adam", "adamw"]
OPTIMIZER_NAMES: tuple[OptimizerName, ...] = get_args(OptimizerName)

SchedulerName = Literal["none", "cosine", "step"]
SCHEDULER_NAMES: tuple[SchedulerName, ...] = get_args(SchedulerName)

BackendName = Literal["torch", "faiss-flat", "faiss-ivf", "faiss-hnsw"]
#: kNN backends: exact torch (default) or faiss (``pip install tripletlab[faiss]``).
BACKEND_NAMES: tuple[BackendName, ...] = get_args(BackendName)

ModelName = Literal["mlp", "cnn"]
MODEL_NAMES: tuple[ModelName, ...] = get_args(ModelName)

SplitName = Literal["stratified", "held-out-classes", "official"]
SPLIT_NAMES: tuple[SplitName, ...] = get_args(SplitName)
