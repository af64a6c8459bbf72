"""The data of a run: load the configured dataset and split it into train / val / test
tensors (:func:`prepare_data`), and read samples a user gives to a trained run
(:func:`read_input`, :func:`read_samples`).

Example:
    >>> from tripletlab.pipeline.config import load_config
    >>> data = prepare_data(load_config(None, {"data.max_samples": 200}))  # stratified: ≈ 200
    >>> data.in_shape, len(data.y_test) + len(data.y_val) + len(data.y_train)
    ((1, 8, 8), 199)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from tripletlab.data import EmbeddingDataset, load_dataset, split_indices, stratified_split
from tripletlab.errors import DataError
from tripletlab.pipeline.config import RunConfig

__all__ = [
    "IMAGE_SUFFIXES",
    "PreparedData",
    "load_data",
    "prepare_data",
    "read_input",
    "read_samples",
    "split_for",
]

#: Files read as one image by :func:`read_samples`.
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm"}
)


@dataclass
class PreparedData:
    """The splits of one dataset as tensors (or, for an image folder that streams, datasets
    read lazily: :mod:`tripletlab.pipeline.images`), plus what the model needs to know."""

    x_train: Tensor | Dataset
    y_train: Tensor
    x_val: Tensor | Dataset
    y_val: Tensor
    x_test: Tensor | Dataset
    y_test: Tensor
    in_shape: tuple[int, ...]
    class_names: list[str]
    input_mean: float
    input_std: float
    dataset: str
    raw_test: Tensor  # the test inputs as loaded (the baseline is computed on these)

    @property
    def raw_test_flat(self) -> Tensor:
        """The raw test inputs as (N, F) vectors: the raw-feature baseline's embedding."""
        return self.raw_test.reshape(len(self.raw_test), -1)


def load_data(
    cfg: RunConfig, dataset: str | None = None, data_dir: str | None = None
) -> EmbeddingDataset:
    """The configured dataset (or ``dataset``/``data_dir`` instead of the config's); a field
    layout (``market1501:PATH``, a manifest CSV…) gives its ``train`` split."""
    spec = dataset or cfg.data.dataset
    from tripletlab.pipeline.layouts import is_layout_dataset, layout_training_set

    if is_layout_dataset(spec):  # market1501:PATH, cub200:PATH…, a manifest CSV
        return layout_training_set(spec)
    kwargs: dict[str, Any] = {}
    if cfg.data.label_column is not None:
        kwargs["label_column"] = cfg.data.label_column
    return load_dataset(dataset or cfg.data.dataset, data_dir or cfg.data.data_dir, **kwargs)


def _split(
    cfg: RunConfig, labels: Tensor, official: Tensor | None, name: str
) -> tuple[Tensor, Tensor, Tensor]:
    """Train, validation and test indices of the configured protocol (seeded)."""
    if cfg.data.split == "official":
        if official is None:
            raise DataError(f"dataset {name!r} has no official test split")
        train, test = torch.nonzero(~official).squeeze(1), torch.nonzero(official).squeeze(1)
    else:
        train, test = split_indices(labels, cfg.data.split, cfg.data.test_fraction, cfg.seed)
    val = torch.empty(0, dtype=torch.int64)
    if cfg.data.val_fraction > 0:
        # Validation is a stratified part of the training classes in every protocol.
        inner = stratified_split(labels[train], cfg.data.val_fraction, cfg.seed + 1)
        train, val = train[inner.train], train[inner.test]
    return train, val, test


def split_for(
    cfg: RunConfig, labels: Tensor, official: Tensor | None, name: str
) -> tuple[Tensor, Tensor, Tensor]:
    """Train, validation and test indices of ``labels`` under the configured protocol."""
    return _split(cfg, labels, official, name)


def prepare_data(cfg: RunConfig) -> PreparedData:
    """Load ``cfg.data.dataset`` and split it into train / val / test tensors."""
    dataset = load_data(cfg)
    x, y = dataset.features, dataset.labels
    official = dataset.official_test
    if cfg.data.max_samples is not None and cfg.data.max_samples < len(y):
        # A seeded stratified subset (class proportions kept).
        keep = stratified_split(y, 1 - cfg.data.max_samples / len(y), cfg.seed).train
        x, y = x[keep], y[keep]
        official = official[keep] if official is not None else None
    train, val, test = _split(cfg, y, official, dataset.name)
    # One scalar mean/std (of the training split): a scale that leaves the ranking of
    # distances, hence the raw-feature baseline, unchanged.
    mean = float(x[train].mean())
    std = float(x[train].std()) or 1.0

    def part(index: Tensor) -> tuple[Tensor, Tensor]:
        return ((x[index] - mean) / std).float(), y[index].long()

    (xt, yt), (xv, yv), (xs, ys) = part(train), part(val), part(test)
    return PreparedData(
        xt,
        yt,
        xv,
        yv,
        xs,
        ys,
        tuple(x.shape[1:]),
        list(dataset.class_names),
        mean,
        std,
        dataset.name,
        x[test].float(),
    )


def read_input(path: str | Path) -> np.ndarray:
    """Samples to embed: a ``.npy`` array (N, ...), or any dataset ``load_dataset`` reads
    (``.npz``, ``.csv``, an image folder), whose labels are then ignored."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            array: np.ndarray = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise DataError(f"{path}: cannot read as a numeric .npy array ({exc})") from None
        return array
    return load_dataset(str(path)).features.numpy()


def _read_image(path: Path, in_shape: tuple[int, ...] | None) -> np.ndarray:
    """One image as a (1, C, H, W) array in [0, 1], converted to the run's channels and size."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
        image.load()
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"{path}: cannot read the image ({exc})") from None
    converted: Image.Image = image
    if in_shape is not None and len(in_shape) == 3:
        mode = "L" if in_shape[0] == 1 else "RGB"
        size = (in_shape[2], in_shape[1])
        converted = image.convert(mode).resize(size, Image.Resampling.BILINEAR)
    array = np.asarray(converted, dtype=np.float32) / 255.0
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return array[None]


def read_samples(path: str | Path, in_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Samples (N, …) from a ``.npy`` array, one image file, or any dataset the loader reads.

    A single image is converted to the run's channels and size (``in_shape`` = (C, H, W)) and
    scaled to [0, 1], as the image-folder loader does.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such input: {path}")
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        return _read_image(path, in_shape)
    samples = read_input(path)
    shape = None if in_shape is None else tuple(in_shape)
    if shape is not None and samples.size == int(np.prod(shape)) and samples.shape[1:] != shape:
        samples = samples.reshape(1, *shape)  # one sample saved without its batch axis
    return samples
