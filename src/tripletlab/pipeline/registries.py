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
    "AUGMENT_PRESETS",
    "BACKEND_NAMES",
    "LOSS_NAMES",
    "METRIC_NAMES",
    "MINING_SCHEDULES",
    "MODEL_NAMES",
    "OPTIMIZER_NAMES",
    "POOLING_NAMES",
    "PRECISION_NAMES",
    "REDUCTION_NAMES",
    "SCHEDULER_NAMES",
    "SPLIT_NAMES",
    "AugmentPreset",
    "BackendName",
    "LossName",
    "Metric",
    "MiningSchedule",
    "ModelName",
    "MonitorMode",
    "OptimizerName",
    "PoolingName",
    "PrecisionName",
    "RunReduction",
    "SchedulerName",
    "SplitName",
    "StreamMode",
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

#: ``data.stream``: read an image folder lazily ("auto": for image backbones or large folders).
StreamMode = Literal["auto", "yes", "no"]
#: ``augment.preset`` (``--augment``): the presets of :mod:`tripletlab.data.augment`.
AugmentPreset = Literal["none", "light", "strong"]
AUGMENT_PRESETS: tuple[AugmentPreset, ...] = get_args(AugmentPreset)
#: ``model.pooling``: the embedding head's pooling (:class:`tripletlab.nn.heads.EmbeddingHead`).
PoolingName = Literal["avg", "gem", "cls"]
POOLING_NAMES: tuple[PoolingName, ...] = get_args(PoolingName)
#: ``train.precision`` (``--precision``): see :func:`tripletlab.train.devices.resolve_precision`.
PrecisionName = Literal["32", "bf16", "16-mixed"]
PRECISION_NAMES: tuple[PrecisionName, ...] = get_args(PrecisionName)
#: ``train.mining``: online (in the batch), offline (mined before each epoch), alternate.
MiningSchedule = Literal["online", "offline", "alternate"]
MINING_SCHEDULES: tuple[MiningSchedule, ...] = get_args(MiningSchedule)
#: ``train.monitor_mode``: whether a larger or smaller monitored value is better.
MonitorMode = Literal["max", "min"]
