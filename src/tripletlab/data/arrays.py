"""The user's own vectors: ``.npz`` (features + labels), a ``.npy`` pair, or a CSV file.

Labels may be any values (ints, strings); they are numbered 0…C−1 in sorted order and the
original values become the class names. Features must be numeric and finite.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from tripletlab.data.embedding_dataset import (
    EmbeddingDataset,
    check_features,
    encode_labels,
    is_missing_label,
)
from tripletlab.errors import DataError

NPZ_KEYS: tuple[tuple[str, str], ...] = (
    ("features", "labels"),
    ("x", "y"),
    ("X", "y"),
    ("embeddings", "labels"),
    ("data", "target"),
)
DEFAULT_LABEL_COLUMN = "label"


def from_arrays(
    features: np.ndarray, labels: np.ndarray, name: str, source: str
) -> EmbeddingDataset:
    """A dataset from a features array (N, …) and a labels array (N,), checked."""
    features = np.asarray(features)
    labels = np.asarray(labels)
    if features.ndim == 0 or labels.ndim == 0:
        raise DataError(f"{name}: features and labels must be arrays with one entry per sample")
    if len(features) != len(labels):
        raise DataError(
            f"{name}: features and labels have different lengths "
            f"({len(features)} rows of features, {len(labels)} labels)"
        )
    codes, class_names = encode_labels(
        labels.reshape(-1) if labels.ndim == 2 and labels.shape[1] == 1 else labels,
        f"{name}: labels",
    )
    return EmbeddingDataset(
        check_features(features, f"{name}: features"), codes, class_names, name, source
    )


def load_npz(path: str | Path) -> EmbeddingDataset:
    """``.npz`` with arrays ``features`` and ``labels`` (or x/y, X/y, embeddings/labels)."""
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {path}: {error}") from None
    with archive:
        for features_key, labels_key in NPZ_KEYS:
            if features_key in archive.files and labels_key in archive.files:
                return from_arrays(
                    archive[features_key],
                    archive[labels_key],
                    path.stem,
                    f"{path} [{features_key}, {labels_key}]",
                )
        found = ", ".join(archive.files) or "none"
    raise DataError(f"{path} must hold arrays 'features' and 'labels'; found: {found}")


def load_npy_pair(
    features_path: str | Path, labels_path: str | Path | None = None
) -> EmbeddingDataset:
    """Features from one ``.npy`` file and labels from another: ``labels_path``, else a
    sibling ``STEM_labels.npy`` or ``labels.npy``."""
    features_path = Path(features_path)
    if labels_path is None:
        for candidate in (
            features_path.with_name(f"{features_path.stem}_labels.npy"),
            features_path.with_name("labels.npy"),
        ):
            if candidate.exists() and candidate != features_path:
                labels_path = candidate
                break
        else:
            raise DataError(
                f"no labels for {features_path}: pass a labels file, or put "
                f"{features_path.stem}_labels.npy or labels.npy beside it"
            )
    labels_path = Path(labels_path)
    features, labels = (_load_npy(features_path), _load_npy(labels_path))
    return from_arrays(features, labels, features_path.stem, f"{features_path} + {labels_path}")


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {path}: {error}") from None


def load_csv(path: str | Path, label_column: str | int | None = None) -> EmbeddingDataset:
    """A CSV with a header row: one sample per row, the label in ``label_column`` (a name or
    a 0-based index; default ``"label"``), every other column a numeric feature.

    Raises:
        DataError: no such column, rows of different lengths, a non-numeric feature or a
            missing label (empty, ``nan``, ``inf``; named by line and column), fewer than one
            feature column.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"cannot read {path}: {error}") from None
    if len(rows) < 2:
        raise DataError(f"{path}: needs a header row and at least one data row")
    header, body = [cell.strip() for cell in rows[0]], rows[1:]
    column = _label_column_index(header, label_column, path)
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DataError(f"{path}, line {line}: {len(row)} fields, the header has {len(header)}")
    if len(header) < 2:
        raise DataError(f"{path}: needs at least one feature column besides the label")
    labels = np.array([row[column].strip() for row in body])
    for line, label in enumerate(labels, start=2):
        if is_missing_label(label):
            raise DataError(
                f"{path}, line {line}, column {header[column]!r}: label {label!r} is not a class"
            )
    feature_columns = [i for i in range(len(header)) if i != column]
    features = np.empty((len(body), len(feature_columns)), dtype=np.float64)
    for line, row in enumerate(body, start=2):
        for j, i in enumerate(feature_columns):
            try:
                features[line - 2, j] = float(row[i])
            except ValueError:
                raise DataError(
                    f"{path}, line {line}, column {header[i]!r}: {row[i]!r} is not a number"
                ) from None
    numeric = _as_numbers(labels)
    return from_arrays(
        features,
        numeric if numeric is not None else labels,
        path.stem,
        f"{path} [label column {header[column]!r}]",
    )


def _label_column_index(header: list[str], label_column: str | int | None, path: Path) -> int:
    if label_column is None:
        label_column = DEFAULT_LABEL_COLUMN
    if isinstance(label_column, int) and not isinstance(label_column, bool):
        if not 0 <= label_column < len(header):
            raise DataError(
                f"{path}: label column index {label_column} out of range 0..{len(header) - 1}"
            )
        return label_column
    if str(label_column) in header:
        return header.index(str(label_column))
    if str(label_column).isdigit() and int(label_column) < len(header):
        return int(label_column)
    raise DataError(
        f"{path}: no column {label_column!r} for the labels; columns are: {', '.join(header)} "
        "(choose one with --label-column)"
    )


def _as_numbers(values: np.ndarray) -> np.ndarray | None:
    try:
        numbers = values.astype(np.float64)
    except ValueError:
        return None
    return numbers.astype(np.int64) if np.all(numbers == np.round(numbers)) else None


def load_array_file(
    path: str | Path, *, label_column: str | int | None = None, labels: str | Path | None = None
) -> EmbeddingDataset:
    """Dispatch on the suffix: ``.npz``, ``.npy`` or ``.csv``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return load_npz(path)
    if suffix == ".npy":
        return load_npy_pair(path, labels)
    if suffix == ".csv":
        return load_csv(path, label_column)
    raise DataError(
        f"cannot read {path}: expected a folder, or a .npz, .npy or .csv file (got {suffix or 'no suffix'!r})"
    )
