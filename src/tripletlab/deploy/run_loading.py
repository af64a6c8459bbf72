"""A trained run as a ready-to-use embedder: :func:`load_run` → :class:`LoadedRun`.

A run directory (as ``tripletlab train`` writes it: ``config.json``, ``metrics.json``,
``checkpoints/final.pt`` or ``last.pt`` holding the weights, the input shape and the
training split's ``input_mean`` / ``input_std``) is turned into:

* ``.model`` — the embedding network *including* the run's L2 normalisation, in eval mode:
  ``model(x)`` (N, *input_shape) → (N, D), exactly what training evaluated and what
  :func:`~tripletlab.deploy.export.export_run` exports;
* ``.preprocess`` — a :class:`~tripletlab.deploy.preprocess.Preprocess` (image or feature
  standardisation) so that ``.embed`` takes images, image files or arrays directly;
* ``.threshold`` — the verification distance threshold chosen in the run's evaluation;
  ``.thresholds`` also holds the identification threshold (the same unless the run records
  its own); ``.metric`` — the distance the run was trained with; ``.config`` — the run config.

This module reads a run through one function, :func:`_read_training_run`, the only place
that knows the training package's internals.

Example:
    >>> import torch
    >>> from tripletlab.deploy.preprocess import Preprocess
    >>> run = LoadedRun.from_module(torch.nn.Linear(3, 2), Preprocess("features", (3,)))
    >>> run.embed(np.ones((4, 3))).shape
    (4, 2)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tripletlab.deploy.files import file_sha256
from tripletlab.deploy.preprocess import Preprocess
from tripletlab.errors import ConfigError, DataError

__all__ = ["EmbeddingModel", "LoadedRun", "Thresholds", "load_run"]

#: Datasets whose samples are images scaled to [0, 1] (the loaders' rule): a run trained on
#: one of these takes images. Any other (arrays, CSV) takes feature vectors.
_IMAGE_DATASETS = ("digits", "fashion-mnist")
_ARRAY_SUFFIXES = (".npz", ".npy", ".csv")
#: Rows embedded per forward pass: bounds memory for large inputs.
EMBED_BATCH = 256


class EmbeddingModel(nn.Module):
    """``network`` followed by L2 normalisation of the rows when ``normalize``.

    Example:
        >>> round(EmbeddingModel(nn.Linear(2, 2, bias=False), True)(torch.ones(1, 2)).norm().item(), 6)
        1.0
    """

    def __init__(self, network: nn.Module, normalize: bool) -> None:
        super().__init__()
        self.network, self.normalize = network, bool(normalize)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.network(x)
        return F.normalize(out, dim=1) if self.normalize else out


@dataclass(frozen=True)
class Thresholds:
    """Distance thresholds: ``verification`` (same identity when d ≤ τ) and
    ``identification`` (a query's best match beyond it is ``unknown``)."""

    verification: float | None = None
    identification: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return {"verification": self.verification, "identification": self.identification}


@dataclass
class LoadedRun:
    """A trained embedder with what it needs to be used (see the module docstring)."""

    model: nn.Module
    preprocess: Preprocess
    metric: str = "sqeuclidean"
    normalized: bool = True
    thresholds: Thresholds = field(default_factory=Thresholds)
    config: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    source: str | None = None
    #: SHA-256 of the checkpoint the weights came from (None for a module given directly).
    fingerprint: str | None = None

    @classmethod
    def from_module(
        cls,
        network: nn.Module,
        preprocess: Preprocess,
        *,
        metric: str = "sqeuclidean",
        normalize: bool = False,
        thresholds: Thresholds | None = None,
        config: dict[str, Any] | None = None,
    ) -> LoadedRun:
        """Any embedding network (e.g. a transformers backbone with a pooling head) as a run."""
        model = EmbeddingModel(network, normalize).eval()
        return cls(model, preprocess, metric, normalize, thresholds or Thresholds(), config or {})

    @property
    def threshold(self) -> float | None:
        """The verification threshold (None when the run was not evaluated to the end)."""
        return self.thresholds.verification

    @property
    def embedding_dim(self) -> int:
        """D, the width of an embedding (one forward pass of a zero input)."""
        with torch.no_grad():
            zero = torch.zeros(1, *self.preprocess.input_shape)
            return int(self.model(zero).shape[1])

    def embed(self, inputs: Any, batch_size: int = EMBED_BATCH) -> np.ndarray:
        """Embeddings (N, D) float32 of images, image files or arrays (see Preprocess)."""
        return self.embed_preprocessed(self.preprocess(inputs), batch_size)

    @torch.no_grad()
    def embed_preprocessed(self, batch: np.ndarray, batch_size: int = EMBED_BATCH) -> np.ndarray:
        """Embeddings (N, D) of model inputs already preprocessed, (N, *input_shape)."""
        self.model.eval()
        chunks = [
            self.model(torch.from_numpy(batch[i : i + batch_size])).float().numpy()
            for i in range(0, len(batch), batch_size)
        ]
        return np.concatenate(chunks).astype(np.float32, copy=False)


def load_run(path: str | Path) -> LoadedRun:
    """The run in directory ``path`` as a :class:`LoadedRun` (model in eval mode, on the CPU).

    Raises:
        ConfigError: no run (no checkpoint) at ``path``, or its checkpoint lacks what the
            run layout promises.
    """
    run_dir = Path(path)
    network, meta = _read_training_run(run_dir)
    try:
        run_cfg = meta["run"]
        in_shape = tuple(int(s) for s in meta["in_shape"])
        mean, std = float(meta["input_mean"]), float(meta["input_std"])
        normalize = bool(run_cfg["model"]["normalize"])
        metric = str(run_cfg["loss"]["metric"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{run_dir}: the checkpoint's metadata is incomplete ({exc})") from None
    preprocess = _preprocess_of(str(run_cfg["data"]["dataset"]), in_shape, mean, std)
    return LoadedRun(
        model=EmbeddingModel(network, normalize).eval(),
        preprocess=preprocess,
        metric=metric,
        normalized=normalize,
        thresholds=_thresholds(run_dir),
        config=dict(run_cfg),
        class_names=list(meta.get("class_names", [])),
        source=str(run_dir.resolve()),
        fingerprint=_checkpoint_fingerprint(run_dir),
    )


def _read_training_run(run_dir: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The trained network and its checkpoint metadata — the one call into train/."""
    from tripletlab.pipeline.trained import load_run as load_training_run

    if not run_dir.is_dir():
        raise ConfigError(f"no run directory at {run_dir}")
    try:
        return load_training_run(run_dir)
    except FileNotFoundError as exc:
        raise ConfigError(f"{run_dir} is not a run: {exc}") from None


def _checkpoint_fingerprint(run_dir: Path) -> str | None:
    """SHA-256 of the checkpoint the run's weights are read from (final before last)."""
    for name in ("final.pt", "last.pt"):
        path = run_dir / "checkpoints" / name
        if path.is_file():
            return file_sha256(path)
    return None


def _preprocess_of(dataset: str, in_shape: tuple[int, ...], mean: float, std: float) -> Preprocess:
    """Images (pixels in [0, 1], resized) for image datasets, else feature standardisation."""
    path = Path(dataset).expanduser()
    # A path that is not an array file is an image (or IDX image) folder.
    is_image_data = dataset in _IMAGE_DATASETS or path.suffix.lower() not in _ARRAY_SUFFIXES
    if is_image_data and len(in_shape) == 3 and in_shape[0] in (1, 3):
        return Preprocess.image(in_shape[0], in_shape[1], in_shape[2], (mean,), (std,))
    return Preprocess("features", in_shape, (mean,), (std,))


def _thresholds(run_dir: Path) -> Thresholds:
    """From ``metrics.json``'s test section (absent when the run did not finish)."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return Thresholds()
    try:
        test = json.loads(path.read_text())["test"]
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the test metrics ({exc})") from None
    verification = test.get("verification_threshold")
    identification = test.get("identification_threshold", verification)
    return Thresholds(
        None if verification is None else float(verification),
        None if identification is None else float(identification),
    )
