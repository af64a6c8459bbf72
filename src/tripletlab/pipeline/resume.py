"""Resuming a run safely: the same config and the same data, or a one-line refusal.

A checkpoint stores the resolved config it was trained with and a fingerprint (SHA-256) of
the prepared data splits. ``--resume`` then

* takes the settings the run started with; a setting given again (a flag or a config-file
  key) must equal the stored one, or the resume is refused with a
  :class:`~tripletlab.errors.ConfigError` naming each key that differs — silently training
  on with other settings would mix two runs in one directory;
* allows a larger ``train.epochs`` only when asked (``extend=True``, the CLI's ``--extend``);
  the learning-rate schedule stays the one the run started with;
* lets the settings that change nothing computed (:data:`ADJUSTABLE`) follow the new value;
* refuses data whose fingerprint differs from the stored one (:func:`check_same_data`).

Example:
    >>> from tripletlab.pipeline.config import load_config
    >>> saved = load_config(None, {"train.epochs": 3}).to_dict()
    >>> resumed_config(load_config(None, {"train.epochs": 5}), saved, extend=True).train.epochs
    5
    >>> resumed_config(load_config(None, {"loss.margin": 0.5}), saved, extend=False)
    Traceback (most recent call last):
    ...
    tripletlab.errors.ConfigError: --resume: the run was started with other settings: loss.margin (run: 0.2, given: 0.5); start a new run with another --out
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from functools import reduce
from typing import Any

import numpy as np
from pydantic import BaseModel
from torch import Tensor

from tripletlab.errors import ConfigError
from tripletlab.pipeline.config import RunConfig, config_from_dict

__all__ = ["ADJUSTABLE", "check_same_data", "data_fingerprint", "explicit_keys", "resumed_config"]

#: Settings a resume may change: they alter neither the training nor its results.
ADJUSTABLE = frozenset({"train.progress", "train.kill_after_steps"})
#: Settings that only locate the run directory (already the same one when resuming).
_LOCATION = frozenset({"out", "name"})
_EPOCHS = "train.epochs"


def explicit_keys(model: BaseModel, prefix: str = "") -> list[str]:
    """Dotted keys of the values set explicitly (file or flags), not left at a default."""
    keys = []
    for name in sorted(model.model_fields_set):
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            keys += explicit_keys(value, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def _get(values: Mapping[str, Any], dotted: str) -> Any:
    node: Any = values
    for key in dotted.split("."):
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def _set(values: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    reduce(lambda node, key: node.setdefault(key, {}), parents, values)[leaf] = value


def resumed_config(cfg: RunConfig, saved: Mapping[str, Any], *, extend: bool) -> RunConfig:
    """The config to resume with: ``saved`` (the run's), checked against what ``cfg`` sets
    explicitly (see the module docstring). ConfigError naming every differing key."""
    given = cfg.to_dict()
    merged = config_from_dict(saved).to_dict()
    differs = []
    for key in explicit_keys(cfg):
        new, old = _get(given, key), _get(merged, key)
        if key in _LOCATION or new == old:
            continue
        if key in ADJUSTABLE or (key == _EPOCHS and extend and new > old):
            _set(merged, key, new)
            continue
        differs.append(f"{key} (run: {old!r}, given: {new!r})")
    if differs:
        hint = "start a new run with another --out"
        if differs[0].startswith(_EPOCHS) and len(differs) == 1 and not extend:
            hint = "add --extend to train a finished run for more epochs"
        raise ConfigError(
            f"--resume: the run was started with other settings: {'; '.join(differs)}; {hint}"
        )
    for key in ADJUSTABLE:
        _set(merged, key, _get(given, key))
    return config_from_dict(merged)


def data_fingerprint(*tensors: Tensor) -> str:
    """SHA-256 of the tensors' shapes, dtypes and bytes (the prepared splits of a run).

    Example:
        >>> import torch
        >>> data_fingerprint(torch.zeros(2)) == data_fingerprint(torch.zeros(2))
        True
        >>> data_fingerprint(torch.zeros(2)) == data_fingerprint(torch.ones(2))
        False
    """
    digest = hashlib.sha256()
    for tensor in tensors:
        array = np.ascontiguousarray(tensor.detach().cpu().numpy())
        digest.update(f"{array.dtype}{array.shape};".encode())
        digest.update(array.data)
    return digest.hexdigest()


def check_same_data(saved: str | None, current: str, dataset: str) -> None:
    """ConfigError when the data's fingerprint differs from the one the run stored
    (a checkpoint from before fingerprints, ``saved`` None, is accepted)."""
    if saved is not None and saved != current:
        raise ConfigError(
            f"--resume: dataset {dataset!r} differs from the data the run was trained on "
            f"(fingerprint {current[:12]}…, the run's {saved[:12]}…); start a new run with "
            "another --out"
        )
