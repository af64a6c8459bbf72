"""The run directory: the one place that knows where a run's files lie.

``runs/<name>/`` (or ``--out``) holds:

=========================================  =================================================
``config.json``                            the resolved configuration
``metrics.json``                           test metrics, baseline, verification, timings
``steps.jsonl``, ``epochs.jsonl``/``.csv``  the training logs (``tensorboard/`` if installed),
                                           written by :class:`~tripletlab.train.logging.RunLogger`
``checkpoints/last.pt``, ``final.pt``      resumable checkpoints, written by the
                                           :class:`~tripletlab.train.trainer.Trainer`
``test_embeddings.npz``                    the test split's embeddings, labels, raw inputs
``report.md`` + ``*.png``                  the report
=========================================  =================================================

The logger and the trainer name their own files (class constants); :class:`RunDir` reads
those names rather than repeating them, and every other module asks :class:`RunDir`.

Example:
    >>> import tempfile
    >>> run = RunDir(tempfile.mkdtemp())
    >>> run.checkpoint_path.name, run.metrics_path.name
    ('last.pt', 'metrics.json')
    >>> run.verification_threshold() is None  # no metrics.json yet
    True
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from tripletlab.atomic import atomic_write, atomic_write_text
from tripletlab.errors import ConfigError
from tripletlab.train.logging import RunLogger, read_jsonl
from tripletlab.train.trainer import Trainer

__all__ = ["RunDir"]


def _jsonable(value: Any) -> Any:
    """JSON-compatible: numpy scalars as Python numbers, NaN/Inf as null."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunDir:
    """A run directory (see the module docstring); it need not exist yet."""

    CONFIG_FILE = "config.json"
    METRICS_FILE = "metrics.json"
    REPORT_FILE = "report.md"
    TEST_EMBEDDINGS_FILE = "test_embeddings.npz"
    CHECKPOINTS_DIR = "checkpoints"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- paths ------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / self.METRICS_FILE

    @property
    def report_path(self) -> Path:
        return self.path / self.REPORT_FILE

    @property
    def steps_path(self) -> Path:
        return self.path / RunLogger.STEPS_FILE

    @property
    def epochs_path(self) -> Path:
        return self.path / RunLogger.EPOCHS_FILE

    @property
    def test_embeddings_path(self) -> Path:
        return self.path / self.TEST_EMBEDDINGS_FILE

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / self.CHECKPOINTS_DIR

    @property
    def checkpoint_path(self) -> Path:
        """The checkpoint a resumed run continues from (the latest epoch's)."""
        return self.checkpoints_dir / Trainer.LAST_CHECKPOINT

    def trained_checkpoint(self) -> Path:
        """The checkpoint of the trained model: ``best.pt`` (the best validated epoch, when
        the run tracked one), else ``final.pt``, else ``last.pt``.

        Raises:
            FileNotFoundError: neither exists (not a run directory).
        """
        names = (Trainer.BEST_CHECKPOINT, Trainer.FINAL_CHECKPOINT, Trainer.LAST_CHECKPOINT)
        for name in names:
            path = self.checkpoints_dir / name
            if path.is_file():
                return path
        raise FileNotFoundError(f"no checkpoint in {self.checkpoints_dir} (is it a run?)")

    # -- writing ----------------------------------------------------------------------------
    def create(self) -> RunDir:
        """Make the directory (and its parents); ConfigError when the path is a file."""
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"run directory {self.path} exists and is not a directory")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ConfigError(f"run directory {self.path}: a parent is a file") from None
        return self

    def logger(self) -> RunLogger:
        """A logger writing this run's step and epoch logs."""
        return RunLogger(self.path)

    def write_config(self, config: dict[str, Any]) -> Path:
        """``config.json``: the resolved configuration."""
        return atomic_write_text(self.config_path, json.dumps(config, indent=2) + "\n")

    def write_metrics(self, summary: dict[str, Any]) -> Path:
        """``metrics.json`` (NaN and Inf written as null), atomically."""
        return atomic_write_text(self.metrics_path, json.dumps(_jsonable(summary), indent=2) + "\n")

    def save_test_embeddings(self, embeddings: Tensor, labels: Tensor, raw: Tensor) -> Path:
        """``test_embeddings.npz``: embeddings (N, D), labels (N,), raw inputs (N, F)."""
        return atomic_write(
            self.test_embeddings_path,
            lambda handle: np.savez_compressed(
                handle, embeddings=embeddings.numpy(), labels=labels.numpy(), raw=raw.numpy()
            ),
        )

    # -- reading ----------------------------------------------------------------------------
    def read_metrics(self) -> dict[str, Any] | None:
        """The content of ``metrics.json``; None when the run has none (or it is unreadable)."""
        try:
            data = json.loads(self.metrics_path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def read_steps(self) -> list[dict[str, Any]]:
        """The step records of ``steps.jsonl`` ([] when absent)."""
        return read_jsonl(self.steps_path)

    def verification_threshold(self) -> float | None:
        """The verification threshold chosen in the run's evaluation (None if not recorded)."""
        metrics = self.read_metrics()
        try:
            value = metrics["test"]["verification_threshold"] if metrics else None
        except (KeyError, TypeError):
            return None
        return None if value is None else float(value)
