"""Loading a dataset: :func:`load_dataset` picks the loader for a name or a path.

The container every loader returns is :class:`~tripletlab.data.embedding_dataset.EmbeddingDataset`
(also importable from here).

A dataset is a features tensor (N, …) float32, integer labels 0…C−1, the class names and a
description of where it came from. Built-in names (``"digits"``, ``"fashion-mnist"``) are
read from files installed on the machine — nothing is downloaded at run time; any other
argument is a path to the user's own data:

=====================  ===============================================================
path                   read as
=====================  ===============================================================
``dir/``               IDX files (``*-images-idx3-ubyte[.gz]`` + ``*-labels-idx1-…``)
                       when present, else an image folder (one sub-folder per class)
``x.npz``              arrays ``features`` and ``labels`` (also ``x``/``y``, ``X``/``y``)
``x.npy``              features; labels from ``labels=`` or a sibling ``x_labels.npy`` /
                       ``labels.npy``
``x.csv``              one row per sample, a header, the label in ``label_column``
=====================  ===============================================================
"""

from __future__ import annotations

from pathlib import Path

from tripletlab.data import arrays, bundled, idx, image_folder
from tripletlab.data.embedding_dataset import (
    EmbeddingDataset,
    check_features,
    encode_labels,
    require_two_classes,
)
from tripletlab.errors import DataError

__all__ = [
    "BUILTIN_DATASETS",
    "EmbeddingDataset",
    "check_features",
    "encode_labels",
    "load_dataset",
    "require_two_classes",
]

BUILTIN_DATASETS: tuple[str, ...] = ("digits", "fashion-mnist")


def load_dataset(
    name_or_path: str | Path,
    data_dir: str | Path | None = None,
    *,
    label_column: str | int | None = None,
    labels: str | Path | None = None,
    flatten: bool = False,
    image_size: tuple[int, int] | int | None = None,
    on_unreadable: str = "skip",
) -> EmbeddingDataset:
    """Load a built-in dataset by name or the user's own data from a path.

    Args:
        name_or_path: ``"digits"`` (scikit-learn's bundled 8×8 digits), ``"fashion-mnist"``
            (IDX files of the Debian package ``dataset-fashion-mnist`` or of ``data_dir``),
            or a path to an IDX folder, an image folder, ``.npz``, ``.npy`` or ``.csv`` file.
        data_dir: where the built-in dataset's files are (overrides the default location).
        label_column: CSV column holding the labels (name or 0-based index; default
            ``"label"``).
        labels: for a ``.npy`` features file, the ``.npy`` file of labels.
        flatten: return (N, F) vectors instead of (N, C, H, W) images.
        image_size: image folders: resize every image to this (H, W) (default: the most
            common size among the images).
        on_unreadable: image folders: ``"skip"`` (default: leave unreadable files out and
            list them in ``warnings``) or ``"error"`` (refuse the whole folder).

    Returns:
        An :class:`EmbeddingDataset` with at least two classes.

    Raises:
        DataError: unknown name, missing or unreadable files, an empty dataset, a single
            class, features and labels of different lengths.

    Example:
        >>> ds = load_dataset("digits")
        >>> ds.describe()
        'digits: 1797 samples of shape (1, 8, 8), 10 classes (scikit-learn load_digits (bundled, 8×8, scaled to [0, 1]))'
    """
    key = str(name_or_path)
    if key == "digits":
        dataset = bundled.load_digits_dataset(flatten=flatten)
    elif key == "fashion-mnist":
        dataset = idx.load_fashion_mnist(data_dir, flatten=flatten)
    else:
        path = Path(key).expanduser()
        if not path.exists():
            known = ", ".join(repr(n) for n in BUILTIN_DATASETS)
            raise DataError(
                f"dataset {key!r} is neither a built-in dataset ({known}) nor an existing path"
            )
        if path.is_dir():
            if idx.find_idx_pairs(path):
                dataset = idx.load_idx_folder(path, flatten=flatten)
            else:
                dataset = image_folder.load_image_folder(
                    path, image_size=image_size, on_unreadable=on_unreadable, flatten=flatten
                )
        else:
            dataset = arrays.load_array_file(path, label_column=label_column, labels=labels)
            if flatten:
                dataset.features = dataset.flat_features()
    return require_two_classes(dataset)
