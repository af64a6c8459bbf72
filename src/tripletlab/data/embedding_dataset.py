"""The dataset container every loader returns (:class:`EmbeddingDataset`) and the checks the
loaders share. The loaders import this module; :func:`~tripletlab.data.datasets.load_dataset`
imports the loaders — so there is no import cycle between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from tripletlab.errors import ArgumentTypeError, DataError

__all__ = [
    "EmbeddingDataset",
    "check_features",
    "encode_labels",
    "is_missing_label",
    "require_two_classes",
]

#: Label texts that mean "no label" (what pandas and spreadsheets write), never a class.
#: Texts such as "NA" stay classes: they can be real names.
MISSING_LABEL_TEXTS = frozenset({"", "nan"})


def is_missing_label(value: object) -> bool:
    """Whether a label value is missing or not a number where a number was meant: empty
    text, ``nan``, None, or a NaN or infinite number (as text too, e.g. ``-inf``).

    Example:
        >>> [is_missing_label(v) for v in ("cat", "", " NaN", "-inf", 3, float("nan"))]
        [False, True, True, True, False, True]
    """
    if isinstance(value, (str, np.str_, bytes)):
        text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
        text = text.strip().lower()
        if text in MISSING_LABEL_TEXTS:
            return True
        try:
            return not np.isfinite(float(text))
        except ValueError:
            return False
    if isinstance(value, (float, np.floating)):
        return not np.isfinite(value)
    return value is None


@dataclass(eq=False)
class EmbeddingDataset(Dataset):
    """Samples and labels to learn an embedding from.

    Attributes:
        features: (N, …) float32 tensor — (N, C, H, W) images or (N, F) vectors.
        labels: (N,) int64 tensor with values in 0…C−1.
        class_names: C names; ``class_names[labels[i]]`` is sample i's class.
        name: short name (``"digits"``, a file or folder name).
        source: where the data came from, for reports.
        official_test: optional (N,) bool mask of a split defined by the data's authors
            (Fashion-MNIST's 10,000 test images), else None.
        warnings: what the loader skipped and why (unreadable files, empty classes).

    ``dataset[i]`` is ``(features[i], labels[i])``, so it plugs into a torch DataLoader.

    Example:
        >>> ds = EmbeddingDataset(torch.zeros(4, 2), torch.tensor([0, 1, 0, 1]), ["a", "b"], "toy")
        >>> len(ds), ds.n_classes, ds.feature_shape
        (4, 2, (2,))
    """

    features: Tensor
    labels: Tensor
    class_names: list[str]
    name: str
    source: str = ""
    official_test: Tensor | None = None
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.features, Tensor) or not isinstance(self.labels, Tensor):
            raise ArgumentTypeError("features and labels must be torch tensors")
        if self.features.dim() < 2:
            raise DataError(
                f"features must have shape (N, ...) with at least 2 dimensions; "
                f"got {tuple(self.features.shape)}"
            )
        if len(self.features) != len(self.labels):
            raise DataError(
                f"features and labels have different lengths: {len(self.features)} samples "
                f"but {len(self.labels)} labels"
            )
        self.features = self.features.to(torch.float32)
        self.labels = self.labels.to(torch.int64)
        if len(self.labels) and (
            int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.class_names)
        ):
            raise DataError(f"labels must lie in 0..{len(self.class_names) - 1}")
        if self.official_test is not None and self.official_test.shape != self.labels.shape:
            raise DataError("official_test must be a bool mask with one entry per sample")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.features[index], self.labels[index]

    @property
    def n_classes(self) -> int:
        """Number of classes (including any without samples in a subset)."""
        return len(self.class_names)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. ``(1, 28, 28)`` or ``(64,)``."""
        return tuple(self.features.shape[1:])

    def flat_features(self) -> Tensor:
        """Features as (N, prod(feature_shape)), the raw-input baseline's vectors."""
        return self.features.reshape(len(self.features), -1)

    def subset(self, indices: Tensor | Sequence[int], name: str | None = None) -> EmbeddingDataset:
        """The samples at ``indices`` (class names and numbering kept)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return EmbeddingDataset(
            self.features[index],
            self.labels[index],
            list(self.class_names),
            name or self.name,
            self.source,
            None if self.official_test is None else self.official_test[index],
            list(self.warnings),
        )

    def describe(self) -> str:
        """One line: name, size, shape, classes, source."""
        return (
            f"{self.name}: {len(self)} samples of shape {self.feature_shape}, "
            f"{self.n_classes} classes ({self.source})"
        )


def encode_labels(
    raw: np.ndarray | Sequence[object], what: str = "labels"
) -> tuple[Tensor, list[str]]:
    """Map arbitrary label values (ints, strings…) to 0…C−1 and their names, in sorted order.

    Example:
        >>> encode_labels(np.array(["cat", "dog", "cat"]))
        (tensor([0, 1, 0]), ['cat', 'dog'])
    """
    values = np.asarray(raw)
    if values.ndim != 1:
        raise DataError(f"{what} must be one-dimensional; got shape {values.shape}")
    if values.dtype.kind == "f":
        if not np.isfinite(values).all():
            bad = int(np.flatnonzero(~np.isfinite(values))[0])
            raise DataError(f"{what} contain NaN or Inf (first in sample {bad})")
        if (values == np.round(values)).all():
            values = values.astype(np.int64)
    elif values.dtype.kind in "USO":
        missing = [i for i, v in enumerate(values.tolist()) if is_missing_label(v)]
        if missing:
            raise DataError(
                f"{what}: sample {missing[0]} has label {str(values[missing[0]])!r}, not a class "
                f"({len(missing)} such labels)"
            )
    try:
        classes, codes = np.unique(values, return_inverse=True)
    except TypeError as error:
        raise DataError(f"{what} mix incomparable types: {error}") from None
    return torch.from_numpy(codes.astype(np.int64).reshape(-1)), [str(c) for c in classes]


def check_features(features: np.ndarray, what: str) -> Tensor:
    """A numeric array with finite entries and one row per sample, as float32."""
    array = np.asarray(features)
    if array.dtype.kind not in "biuf":
        raise DataError(f"{what} must be numeric; got dtype {array.dtype}")
    if array.ndim < 2:
        array = array.reshape(len(array), 1) if array.ndim == 1 else array
        if array.ndim < 2:
            raise DataError(f"{what} must have one row per sample; got a scalar")
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        bad = int(np.argwhere(~np.isfinite(array).reshape(len(array), -1).all(axis=1))[0, 0])
        raise DataError(f"{what} contain NaN or Inf (first in sample {bad})")
    return torch.from_numpy(np.ascontiguousarray(array))


def require_two_classes(dataset: EmbeddingDataset) -> EmbeddingDataset:
    """Metric learning needs at least two classes with samples; raise a DataError otherwise."""
    if len(dataset) == 0:
        raise DataError(f"{dataset.name}: the dataset is empty ({dataset.source})")
    present = torch.unique(dataset.labels)
    if len(present) < 2:
        only = dataset.class_names[int(present[0])]
        raise DataError(
            f"{dataset.name}: only one class ({only!r}) — metric learning needs at least two "
            f"classes to tell apart ({dataset.source})"
        )
    return dataset
