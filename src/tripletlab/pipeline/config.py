"""The run configuration: one validated pydantic model of everything ``tripletlab train`` does.

A run is described by :class:`RunConfig` — data, model, loss, optimiser, training loop,
evaluation and report — with defaults that work out of the box (the bundled ``digits`` data,
an MLP, batch-all triplet loss on L2-normalised embeddings, P×K batches). Values come from,
in increasing priority: the defaults, a TOML or YAML file, and command-line flags
(``overrides``, dotted keys such as ``"loss.margin"``).

An invalid value raises :class:`~tripletlab.errors.ConfigError` naming the key and the
expected type, e.g. ``config key 'train.epochs': expected an integer, got 'ten'``. Types are
strict: a boolean is not an integer (``epochs = true`` is refused, not read as 1), a float
is not an integer, and numbers must be finite (``lr = inf`` is refused). Numbers written as
text are still read as numbers for float keys only (YAML 1.1 reads ``1e-3`` as a string).

Example:
    >>> from tripletlab.pipeline.config import RunConfig, load_config
    >>> cfg = load_config(None, {"loss.margin": 0.1, "train.epochs": 3})
    >>> (cfg.loss.name, cfg.loss.margin, cfg.train.epochs)
    ('batch-all', 0.1, 3)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tripletlab.errors import ConfigError
from tripletlab.pipeline.registries import (
    LOSS_NAMES,
    AugmentPreset,
    LossName,
    Metric,
    MiningSchedule,
    MonitorMode,
    OptimizerName,
    PoolingName,
    PrecisionName,
    RunReduction,
    SchedulerName,
    SplitName,
    StreamMode,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "LOSSES",
    "AugmentConfig",
    "DataConfig",
    "EvalConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "ReportConfig",
    "RunConfig",
    "TrainConfig",
    "config_from_dict",
    "load_config",
    "read_config_file",
]

#: Loss names accepted by ``loss.name`` (``--loss``); kept for code importing it from here.
LOSSES = LOSS_NAMES


def _refuse_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number")
    return value


#: A float key: strict about booleans, lax about numbers written as text (YAML's ``1e-3``).
Number = Annotated[float, Field(strict=False), BeforeValidator(_refuse_bool)]

#: Largest seed: numpy's legacy global RNG takes seeds below 2**32.
MAX_SEED = 2**32 - 1

#: Devices ``train.device`` accepts: ``cuda:N`` picks one GPU.
DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"


class _Section(BaseModel):
    # extra="forbid": a misspelt key is an error, not a silently ignored setting.
    # strict: no bool for int, no float for int, no "yes" for bool; allow_inf_nan: finite.
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False
    )


class DataConfig(_Section):
    """Which data, and how it is split into train / validation / test."""

    dataset: str = Field(
        "digits",
        description="'digits', 'fashion-mnist', or a path: image folder, .npz/.npy, .csv",
    )
    data_dir: str | None = Field(None, description="where fashion-mnist's IDX files lie")
    split: SplitName = Field(
        "stratified", description="'official': the data's own test set (fashion-mnist)"
    )
    test_fraction: Number = Field(0.2, gt=0, lt=1, description="of samples (or of classes)")
    val_fraction: Number = Field(0.1, ge=0, lt=1, description="of the training part")
    max_samples: int | None = Field(None, gt=0, description="use a seeded subset this large")
    label_column: str | None = Field(None, description="CSV label column (default: last)")
    image_size: int | list[int] | None = Field(
        None,
        description="H or [H, W] the image backbone sees (default 224 for hf:/factory models); "
        "with mlp/cnn on an image folder: the size images are resized to",
    )
    stream: StreamMode = Field(
        "auto",
        description="read an image folder lazily from disk: 'auto' (when the model is an "
        "image backbone or the folder is large), 'yes', 'no' (decode into memory)",
    )
    on_unreadable: str = Field(
        "skip", description="an unreadable file in an image folder: 'skip' (named) or 'error'"
    )


class ModelConfig(_Section):
    """The embedding network, chosen by name (``mlp`` for features, ``cnn`` for images)."""

    name: str = Field(
        "mlp",
        description="'mlp', 'cnn', 'hf:PATH_OR_NAME' (a local transformers vision model) or "
        "'package.module:factory' (returns an nn.Module mapping images to features)",
    )
    embedding_dim: int = Field(32, gt=0, description="output width (projection for hf/factory)")
    hidden: list[int] = Field(default_factory=lambda: [256], description="MLP hidden widths")
    activation: str = Field("relu", description="activation of the built-in mlp/cnn")
    dropout: Number = Field(0.2, ge=0, lt=1, description="MLP dropout after each hidden layer")
    normalize: bool = Field(
        True, description="L2-normalise the embeddings (default depends on loss.name)"
    )
    pretrained: bool | None = Field(
        None, description="hf: models: load the weights (None: yes) or random init (false)"
    )
    pooling: PoolingName = Field("avg", description="head pooling: avg, gem, cls (ViT-like)")
    bnneck: bool = Field(False, description="BNNeck (Luo et al. 2019) in the embedding head")
    projection: bool = Field(
        True, description="hf/factory: project the pooled features to embedding_dim"
    )

    @field_validator("name")
    @classmethod
    def _known_model(cls, value: str) -> str:
        from tripletlab.nn.backbones import parse_model_spec  # torch-free parse

        parse_model_spec(value)
        return value


class LossConfig(_Section):
    """The metric-learning loss and its distance."""

    name: LossName = Field("batch-all", description="batch-all, batch-hard, semi-hard, contrastive")
    margin: Number = Field(0.2, ge=0, description="default depends on loss.name")
    metric: Metric = Field("sqeuclidean", description="default depends on loss.name")
    smoothing: Number | None = Field(
        None, ge=0, description="μ of the smoothed hinge (default depends on loss.name)"
    )
    reduction: RunReduction = Field(
        "mean_active", description="mean (all valid), mean_active (loss > 0), sum"
    )
    xbm_size: int | None = Field(
        None, gt=0, description="cross-batch memory of this many embeddings (XBM); None: off"
    )


class OptimConfig(_Section):
    """Optimiser, learning-rate schedule and gradient clipping."""

    name: OptimizerName = Field("adam", description="sgd, adam, adamw")
    lr: Number = Field(3e-3, gt=0, description="learning rate (of the head for image backbones)")
    weight_decay: Number = Field(0.0, ge=0, description="not applied to norms and biases")
    momentum: Number = Field(0.9, ge=0, lt=1, description="SGD only")
    scheduler: SchedulerName = Field("cosine", description="per-epoch schedule: none, cosine, step")
    step_size: int = Field(10, gt=0, description="epochs between decays (step scheduler)")
    gamma: Number = Field(0.1, gt=0, le=1, description="decay factor (step scheduler)")
    grad_clip: Number | None = Field(5.0, gt=0, description="max gradient norm; None: off")
    warmup_epochs: int = Field(0, ge=0, description="linear warm-up from lr/10 over N epochs")
    freeze_epochs: int = Field(0, ge=0, description="train only the head for N epochs")
    backbone_lr_multiplier: Number = Field(
        1.0, gt=0, description="the backbone learns at lr × this (hf/factory models)"
    )


class TrainConfig(_Section):
    """The training loop: epochs, P×K batches, checkpoints, determinism."""

    epochs: int = Field(30, gt=0, description="training epochs")
    p: int = Field(10, ge=2, description="classes per batch")
    k: int = Field(8, ge=2, description="samples per class in a batch")
    steps_per_epoch: int | None = Field(
        None, gt=0, description="default: about one pass over the training set"
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    precision: PrecisionName = Field("32", description="32, bf16 or 16-mixed")
    workers: int = Field(0, ge=0, description="DataLoader worker processes (image decoding)")
    accumulate_batches: int = Field(
        1, ge=1, description="sum gradients of N P×K batches per optimiser step"
    )
    mining: MiningSchedule = Field(
        "online", description="online (in the batch), offline (before each epoch), alternate"
    )
    stop_on_collapse: bool = Field(False, description="stop the run on a collapse alarm")
    monitor: str = Field("map_at_r", description="validation metric for best.pt, or 'loss'")
    monitor_mode: MonitorMode = Field("max", description="max or min ('min' for loss)")
    patience: int | None = Field(
        None, gt=0, description="stop after N validated epochs without improvement"
    )
    min_delta: Number = Field(0.0, ge=0, description="the least change that counts")
    threads: int | None = Field(
        None, gt=0, description="torch CPU threads; default: 1 for the MLP, all for the CNN"
    )
    checkpoint_every: int = Field(1, gt=0, description="epochs between checkpoints")
    progress: bool = Field(
        True, description="bars on a terminal, else one line per epoch on stderr"
    )
    # A test hook: SIGKILL this process after so many optimiser steps, to test --resume
    # on a genuinely killed run.
    kill_after_steps: int | None = Field(
        None, gt=0, description="test hook: SIGKILL after N steps (resume tests)"
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        import re

        if not re.fullmatch(DEVICE_PATTERN, value):
            raise ValueError("expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
        return value


class EvalConfig(_Section):
    """Evaluation: retrieval metrics each epoch on the validation split, all at the end."""

    recall_at: list[int] = Field(
        default_factory=lambda: [1, 2, 4, 8], description="k of the Recall@k metrics"
    )
    knn_k: int = Field(5, gt=0, description="neighbours of the kNN accuracy")
    validate_every: int = Field(1, gt=0, description="epochs between validations")
    batch_size: int = Field(1024, gt=0, description="for computing embeddings")


class AugmentConfig(_Section):
    """Train-time image augmentation (kornia); evaluation resizes and centre-crops."""

    preset: AugmentPreset = Field("none", description="none, light (crop+flip), strong")
    crop_scale: list[float] | None = Field(None, description="random resized crop scale")
    flip_p: float | None = Field(None, ge=0, le=1, description="horizontal flip probability")
    erasing_p: float | None = Field(None, ge=0, le=1, description="random erasing probability")
    eval_crop_fraction: float | None = Field(
        None, gt=0, le=1, description="centre crop fraction at evaluation (default 0.875)"
    )


class ReportConfig(_Section):
    """The report: report.md and PNG figures."""

    enabled: bool = Field(True, description="write report.md and its figures")
    tsne: bool = Field(True, description="also a t-SNE scatter when the test set is small")
    tsne_max_points: int = Field(2000, gt=0, description="the largest test set drawn by t-SNE")


class RunConfig(_Section):
    """The whole run. ``out`` defaults to ``runs/<name>``; ``name`` defaults to
    ``<dataset>-<model>-<loss>-<timestamp>`` (a suffix when it exists)."""

    name: str | None = Field(None, description="run name (default: dataset-model-loss-time)")
    out: str | None = Field(None, description="run directory (default: runs/<name>)")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seeds sampling, initialisation and splits")
    data: DataConfig = Field(default_factory=lambda: DataConfig())
    model: ModelConfig = Field(default_factory=lambda: ModelConfig())
    loss: LossConfig = Field(default_factory=lambda: LossConfig())
    optim: OptimConfig = Field(default_factory=lambda: OptimConfig())
    train: TrainConfig = Field(default_factory=lambda: TrainConfig())
    eval: EvalConfig = Field(default_factory=lambda: EvalConfig())
    augment: AugmentConfig = Field(default_factory=lambda: AugmentConfig())
    report: ReportConfig = Field(default_factory=lambda: ReportConfig())

    @model_validator(mode="before")
    @classmethod
    def _loss_defaults(cls, values: Any) -> Any:
        """Keys the user left unset take the measured defaults of ``loss.name``."""
        from tripletlab.pipeline.loss_defaults import apply_loss_defaults

        return apply_loss_defaults(values)

    @property
    def out_dir(self) -> Path:
        """The run directory (``runs/<name>``; ``runs/run`` when unnamed)."""
        return Path(self.out) if self.out else Path("runs") / (self.name or "run")

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible nested dict (what is stored in checkpoints and ``config.json``)."""
        return self.model_dump(mode="json")


_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "string": "a string",
    "list": "a list",
    "literal": "one of",
    "dict": "a table/mapping",
    "model": "a table/mapping",
    "extra": "no such key",
}


def _describe(error: Mapping[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "<root>"
    kind = str(error["type"])
    given = error.get("input")
    if kind == "extra_forbidden":
        return f"config key '{key}': unknown key"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"config key '{key}': expected one of {expected}, got {given!r}"
    if kind.endswith(("_parsing", "_type")) or kind.startswith(("int", "float", "bool")):
        for stem, word in _TYPE_WORDS.items():
            if kind.startswith(stem):
                return f"config key '{key}': expected {word}, got {given!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"config key '{key}': {message}, got {given!r}"


def config_from_dict(values: Mapping[str, Any]) -> RunConfig:
    """Validate a nested dict into a :class:`RunConfig` (ConfigError on the first bad key)."""
    try:
        return RunConfig.model_validate(dict(values))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(_describe(first)) from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a ``.toml``, ``.yaml``/``.yml`` or ``.json`` file into a nested dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
        if suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file {path}: expected .toml, .yaml, .yml or .json")
    except ConfigError:
        raise
    except Exception as exc:  # parse errors of three libraries, one message
        raise ConfigError(f"config file {path} cannot be parsed: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a table/mapping at the top level")
    return data


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = target
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config key '{part}': expected a table/mapping")
        node = child
    node[leaf] = value


def load_config(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> RunConfig:
    """Defaults, then the file at ``path`` (if any), then ``overrides`` (dotted keys; None
    values are ignored, so unset CLI flags do not override the file)."""
    values: dict[str, Any] = read_config_file(path) if path is not None else {}
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(values, dotted, value)
    return config_from_dict(values)
