"""Seeded train / test splits: stratified (same classes on both sides) or held-out classes.

* ``stratified``: every class is split in the same proportion, so train and test hold the
  same classes — the classification-style protocol (and the ``digits`` default).
* ``held-out-classes``: whole classes go to the test side; retrieval is then among classes
  the model never saw — the metric-learning protocol of Musgrave et al. 2020 and of
  CUB / Cars / SOP benchmarks, where train and test classes are disjoint.

Both return sorted index tensors and depend only on the labels and the seed (a
``numpy.random.default_rng(seed)``), so a run is reproducible from its config.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from tripletlab.data.embedding_dataset import EmbeddingDataset
from tripletlab.errors import ArgumentTypeError, DataError, InvalidArgumentError

SPLITS: tuple[str, ...] = ("stratified", "held-out-classes")


class Split(NamedTuple):
    """Sorted int64 index tensors of the two sides."""

    train: Tensor
    test: Tensor


def stratified_split(labels: Tensor, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """Each class split in the proportion ``test_fraction``, seeded.

    A class of n ≥ 2 samples puts round(n·test_fraction), clamped to 1…n−1, samples on
    the test side, so every such class is on both sides. A class with a single sample
    cannot be on both: it goes to the train side.

    Example:
        >>> split = stratified_split(torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]), 0.25, seed=0)
        >>> len(split.train), len(split.test), torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])[split.test].tolist()
        (6, 2, [0, 1])
    """
    _check_fraction(test_fraction)
    y = _labels_array(labels)
    rng = np.random.default_rng(seed)
    test_parts = []
    for value in np.unique(y):
        members = np.flatnonzero(y == value)
        if len(members) < 2:
            continue
        n_test = min(max(round(len(members) * test_fraction), 1), len(members) - 1)
        test_parts.append(rng.choice(members, size=n_test, replace=False))
    test = np.sort(np.concatenate(test_parts)) if test_parts else np.empty(0, dtype=np.int64)
    return _split(len(y), test)


def held_out_classes_split(labels: Tensor, test_fraction: float = 0.5, seed: int = 0) -> Split:
    """A seeded ``test_fraction`` of the classes (all their samples) on the test side.

    At least one class stays on each side; with the test side used for retrieval it
    should hold at least two classes (there is no negative otherwise), so that is
    required too.

    Example:
        >>> y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        >>> split = held_out_classes_split(y, 0.5, seed=0)
        >>> set(y[split.train].tolist()).isdisjoint(y[split.test].tolist()), len(split.test)
        (True, 4)
    """
    _check_fraction(test_fraction)
    y = _labels_array(labels)
    classes = np.unique(y)
    if len(classes) < 3:
        raise DataError(
            f"a held-out-classes split needs at least 3 classes (2 for testing, 1 for "
            f"training); got {len(classes)}"
        )
    n_test = min(max(round(len(classes) * test_fraction), 2), len(classes) - 1)
    test_classes = np.random.default_rng(seed).choice(classes, size=n_test, replace=False)
    return _split(len(y), np.flatnonzero(np.isin(y, test_classes)))


def official_split(dataset: EmbeddingDataset) -> Split:
    """The split the data's authors defined (Fashion-MNIST: 60,000 train / 10,000 test)."""
    if dataset.official_test is None:
        raise DataError(f"{dataset.name} has no official test split")
    return _split(len(dataset), torch.nonzero(dataset.official_test).squeeze(1).numpy())


def split_indices(
    labels: Tensor, kind: str = "stratified", test_fraction: float = 0.2, seed: int = 0
) -> Split:
    """:func:`stratified_split` or :func:`held_out_classes_split` by name."""
    if kind == "stratified":
        return stratified_split(labels, test_fraction, seed)
    if kind == "held-out-classes":
        return held_out_classes_split(labels, test_fraction, seed)
    raise InvalidArgumentError(f"kind must be one of {SPLITS}; got {kind!r}")


def split_dataset(
    dataset: EmbeddingDataset, kind: str = "stratified", test_fraction: float = 0.2, seed: int = 0
) -> tuple[EmbeddingDataset, EmbeddingDataset]:
    """``(train, test)`` sub-datasets of ``dataset`` (kind ``"official"`` uses
    :func:`official_split`)."""
    split = (
        official_split(dataset)
        if kind == "official"
        else split_indices(dataset.labels, kind, test_fraction, seed)
    )
    return (
        dataset.subset(split.train, f"{dataset.name}/train"),
        dataset.subset(split.test, f"{dataset.name}/test"),
    )


def _split(n: int, test: np.ndarray) -> Split:
    is_test = np.zeros(n, dtype=bool)
    is_test[test] = True
    return Split(
        torch.from_numpy(np.flatnonzero(~is_test).astype(np.int64)),
        torch.from_numpy(np.flatnonzero(is_test).astype(np.int64)),
    )


def _labels_array(labels: Tensor) -> np.ndarray:
    y = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels)
    if y.ndim != 1 or len(y) == 0:
        raise DataError(f"labels must be a non-empty 1-D array; got shape {y.shape}")
    return y


def _check_fraction(test_fraction: float) -> None:
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)):
        raise ArgumentTypeError(
            f"test_fraction must be a number; got {type(test_fraction).__name__}"
        )
    if not 0 < test_fraction < 1:
        raise InvalidArgumentError(
            f"test_fraction must be strictly between 0 and 1; got {test_fraction!r}"
        )
