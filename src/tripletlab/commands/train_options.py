"""The ``train`` options of issues 11 and 12 — model and image data, fine-tuning, device and
precision, batches, mining, collapse alarm, early stopping — each a RunConfig key.

Every option maps to one dotted config key (:data:`EXTRA_TRAIN_FLAGS`); its help ends with
RunConfig's default, so ``--help`` cannot drift from what a run does. ``--device`` is also
checked before anything runs (one line when the device is absent).

Example:
    >>> EXTRA_TRAIN_FLAGS["image_size"], EXTRA_TRAIN_FLAGS["xbm_size"]
    ('data.image_size', 'loss.xbm_size')
"""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce
from typing import Any

import click

from tripletlab.errors import ConfigError
from tripletlab.pipeline import registries
from tripletlab.pipeline.config import RunConfig

__all__ = ["EXTRA_TRAIN_FLAGS", "extra_overrides", "extra_train_options", "parse_image_size"]

#: CLI option name → dotted config key.
EXTRA_TRAIN_FLAGS = {
    "image_size": "data.image_size",
    "stream": "data.stream",
    "augment": "augment.preset",
    "pretrained": "model.pretrained",
    "pooling": "model.pooling",
    "projection": "model.projection",
    "bnneck": "model.bnneck",
    "freeze_epochs": "optim.freeze_epochs",
    "backbone_lr_mult": "optim.backbone_lr_multiplier",
    "warmup_epochs": "optim.warmup_epochs",
    "weight_decay": "optim.weight_decay",
    "scheduler": "optim.scheduler",
    "device": "train.device",
    "precision": "train.precision",
    "workers": "train.workers",
    "p": "train.p",
    "k": "train.k",
    "accumulate": "train.accumulate_batches",
    "mining": "train.mining",
    "xbm_size": "loss.xbm_size",
    "stop_on_collapse": "train.stop_on_collapse",
    "monitor": "train.monitor",
    "monitor_mode": "train.monitor_mode",
    "patience": "train.patience",
    "min_delta": "train.min_delta",
}

_DEFAULTS = RunConfig()


def _help(text: str, flag: str) -> str:
    value = reduce(getattr, EXTRA_TRAIN_FLAGS[flag].split("."), _DEFAULTS)
    return f"{text} [default: {'off' if value is None else value}]"


def parse_image_size(text: str | None) -> int | list[int] | None:
    """``"224"`` → 224, ``"224,160"`` → [224, 160] (H, W).

    Example:
        >>> parse_image_size("48,64"), parse_image_size("32")
        ([48, 64], 32)
    """
    if text is None:
        return None
    try:
        parts = [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--image-size must be N or H,W; got {text!r}") from None
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return parts
    raise ConfigError(f"--image-size must be N or H,W; got {text!r}")


def _choice(names: tuple[str, ...]) -> click.Choice:
    return click.Choice(list(names))


_OPTIONS: list[tuple[tuple[str, ...], str, dict[str, Any]]] = [
    (("--image-size",), "Image size H or H,W the backbone sees.", {}),
    (("--stream",), "Read an image folder lazily.", {"type": _choice(("auto", "yes", "no"))}),
    (("--augment",), "Train-time augmentation.", {"type": _choice(registries.AUGMENT_PRESETS)}),
    (("--pretrained/--no-pretrained",), "hf: models: load the weights.", {"default": None}),
    (("--pooling",), "Embedding head pooling.", {"type": _choice(registries.POOLING_NAMES)}),
    (
        ("--projection/--no-projection",),
        "Project hf/factory features to --embedding-dim.",
        {"default": None},
    ),
    (("--bnneck/--no-bnneck",), "BNNeck in the embedding head.", {"default": None}),
    (("--freeze-epochs",), "Train only the head for N epochs.", {"type": int}),
    (("--backbone-lr-mult",), "Backbone learning rate = lr × this.", {"type": float}),
    (("--warmup-epochs",), "Linear learning-rate warm-up epochs.", {"type": int}),
    (("--weight-decay",), "Weight decay (not on norms/biases).", {"type": float}),
    (("--scheduler",), "Learning-rate schedule.", {"type": _choice(registries.SCHEDULER_NAMES)}),
    (("--device",), "auto, cpu, cuda, cuda:N or mps (checked first).", {}),
    (("--precision",), "Training precision.", {"type": _choice(registries.PRECISION_NAMES)}),
    (("--workers",), "DataLoader worker processes.", {"type": int}),
    (("--p",), "Classes per batch (P).", {"type": int}),
    (("--k",), "Samples per class in a batch (K).", {"type": int}),
    (("--accumulate",), "Batches per optimiser step (gradient accumulation).", {"type": int}),
    (("--mining",), "Triplet mining.", {"type": _choice(registries.MINING_SCHEDULES)}),
    (("--xbm-size",), "Cross-batch memory size (embeddings).", {"type": int}),
    (("--stop-on-collapse",), "Stop the run on a collapse alarm.", {"is_flag": True}),
    (("--monitor",), "Validation metric for best.pt (or loss).", {}),
    (("--monitor-mode",), "Is larger or smaller better.", {"type": _choice(("max", "min"))}),
    (("--patience",), "Early stop after N epochs without improvement.", {"type": int}),
    (("--min-delta",), "Least improvement that counts.", {"type": float}),
]


def _flag_name(decl: str) -> str:
    return decl.split("/")[0].removeprefix("--").replace("-", "_")


def extra_train_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add every option of :data:`EXTRA_TRAIN_FLAGS` to the ``train`` command."""
    for decls, text, kwargs in reversed(_OPTIONS):
        name = _flag_name(decls[0])
        if kwargs.get("is_flag"):
            kwargs = {**kwargs, "default": None, "flag_value": True}
        command = click.option(*decls, name, help=_help(text, name), **kwargs)(command)
    return command


def extra_overrides(flags: dict[str, Any]) -> dict[str, Any]:
    """Pop the extra options out of ``flags``: {dotted key: value} (None: not given).

    The device is resolved here, before any data or model is loaded."""
    overrides = {EXTRA_TRAIN_FLAGS[name]: flags.pop(name, None) for name in EXTRA_TRAIN_FLAGS}
    overrides["data.image_size"] = parse_image_size(overrides["data.image_size"])
    if overrides["train.device"] is not None:
        from tripletlab.pipeline.devices import resolve_device

        resolve_device(overrides["train.device"])
    return overrides
