"""IDX files (the MNIST / Fashion-MNIST format): reader, writer and the Fashion-MNIST loader.

An IDX file is a 4-byte magic number — two zero bytes, a type code, the number of
dimensions — then one big-endian uint32 per dimension, then the values in C order
(LeCun et al., http://yann.lecun.com/exdb/mnist/). Files may be gzip-compressed (``.gz``).

Fashion-MNIST (Xiao, Rasul & Vollgraf 2017: 70,000 28×28 grey images of 10 clothing
classes, 60,000 train + 10,000 test) is read from the Debian package
``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``) or from ``data_dir``.
"""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

import numpy as np
import torch

from tripletlab.data.embedding_dataset import EmbeddingDataset, check_features, encode_labels
from tripletlab.errors import DataError, InvalidArgumentError

FASHION_MNIST_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dtype.newbyteorder(">").str.lstrip("<>|"): code for code, dtype in _IDX_TYPES.items()}
_PAIR_PATTERN = re.compile(r"^(?P<prefix>.*)-images[-.]idx3-ubyte(?P<gz>\.gz)?$")


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (plain or ``.gz``) as a numpy array of its stored shape and type.

    Raises:
        DataError: a missing file, a bad magic number, an unknown type code, or a length
            that disagrees with the header (a truncated download).
    """
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise DataError(f"IDX file not found: {path}") from None
    except (OSError, EOFError) as error:
        raise DataError(f"cannot read IDX file {path}: {error}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES:
        raise DataError(f"{path}: unknown IDX type code 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _IDX_TYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: IDX header promises {expected} bytes of data for shape {shape}, "
            f"the file holds {len(raw) - header} (truncated or corrupt)"
        )
    return (
        np.frombuffer(raw, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzip-compressed when ``path`` ends in ``.gz``).

    Example:
        >>> import tempfile
        >>> p = write_idx(Path(tempfile.mkdtemp()) / "x-idx2-ubyte.gz", np.eye(2, dtype=np.uint8))
        >>> read_idx(p)
        array([[1, 0],
               [0, 1]], dtype=uint8)
    """
    path = Path(path)
    array = np.asarray(array)
    big = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    key = big.str.lstrip("<>|")
    if key not in _IDX_CODES:
        raise InvalidArgumentError(
            f"IDX cannot store dtype {array.dtype}; use uint8, int8, int16, int32, float32 or float64"
        )
    header = bytes([0, 0, _IDX_CODES[key], array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    payload = header + np.ascontiguousarray(array, dtype=big).tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as handle:
        handle.write(payload)
    return path


def find_idx_pairs(folder: str | Path) -> dict[str, tuple[Path, Path]]:
    """``{prefix: (images file, labels file)}`` for each ``PREFIX-images-idx3-ubyte[.gz]``
    in ``folder`` that has a matching ``PREFIX-labels-idx1-ubyte[.gz]``."""
    folder = Path(folder)
    pairs: dict[str, tuple[Path, Path]] = {}
    if not folder.is_dir():
        return pairs
    for images in sorted(folder.iterdir()):
        match = _PAIR_PATTERN.match(images.name)
        if not match:
            continue
        prefix = match["prefix"]
        for name in (
            f"{prefix}-labels-idx1-ubyte.gz",
            f"{prefix}-labels-idx1-ubyte",
            f"{prefix}-labels.idx1-ubyte",
        ):
            if (folder / name).exists():
                pairs.setdefault(prefix, (images, folder / name))
                break
    return pairs


def load_idx_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W) and labels (N,) of one IDX pair, checked to have the same N."""
    x, y = read_idx(images), read_idx(labels)
    if y.ndim != 1:
        raise DataError(f"{labels}: labels must be one-dimensional; got shape {y.shape}")
    if len(x) != len(y):
        raise DataError(
            f"{images.name} holds {len(x)} images but {labels.name} holds {len(y)} labels"
        )
    return x, y


def load_idx_folder(
    folder: str | Path,
    *,
    flatten: bool = False,
    name: str | None = None,
    class_names: tuple[str, ...] | None = None,
) -> EmbeddingDataset:
    """Every IDX pair of ``folder`` concatenated (``train`` first, then ``t10k``/``test``);
    a pair named ``t10k`` or ``test`` is marked in ``official_test``. uint8 pixels are
    scaled to [0, 1]."""
    folder = Path(folder)
    pairs = find_idx_pairs(folder)
    if not pairs:
        raise DataError(
            f"no IDX pair (PREFIX-images-idx3-ubyte[.gz] + PREFIX-labels-idx1-ubyte[.gz]) in {folder}"
        )
    order = sorted(pairs, key=lambda p: (p in ("t10k", "test"), p))
    xs, ys, test = [], [], []
    for prefix in order:
        x, y = load_idx_pair(*pairs[prefix])
        xs.append(x)
        ys.append(y)
        test.append(np.full(len(y), prefix in ("t10k", "test")))
    if len({x.shape[1:] for x in xs}) > 1:
        raise DataError(f"IDX files in {folder} hold images of different shapes")
    x = np.concatenate(xs)
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    features = check_features(x.astype(np.float32) / scale, f"images in {folder}")
    if flatten:
        features = features.reshape(len(x), -1)
    elif x.ndim == 3:  # (N, H, W) grey images get their channel axis
        features = features.reshape(len(x), 1, *x.shape[1:])
    labels, names = encode_labels(np.concatenate(ys), f"labels in {folder}")
    if class_names is not None and names == [str(i) for i in range(len(class_names))]:
        names = list(class_names)
    is_test = torch.from_numpy(np.concatenate(test))
    return EmbeddingDataset(
        features,
        labels,
        names,
        name or folder.name,
        f"IDX files in {folder} ({', '.join(order)})",
        is_test if bool(is_test.any()) else None,
    )


def fashion_mnist_dir(data_dir: str | Path | None = None) -> Path:
    """The folder with Fashion-MNIST's IDX files: ``data_dir``, else the Debian install."""
    candidates = [Path(data_dir).expanduser()] if data_dir is not None else list(FASHION_MNIST_DIRS)
    for folder in candidates:
        if {"train", "t10k"} <= set(find_idx_pairs(folder)):
            return folder
    if data_dir is not None:
        raise DataError(
            f"no Fashion-MNIST files in {data_dir}: expected train-images-idx3-ubyte[.gz], "
            "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz] and "
            "t10k-labels-idx1-ubyte[.gz]"
        )
    raise DataError(
        "Fashion-MNIST is not installed: install the Debian package "
        f"'{FASHION_MNIST_PACKAGE}' (apt-get install {FASHION_MNIST_PACKAGE}, files in "
        f"{FASHION_MNIST_DIRS[0]}) or pass --data-dir with its four IDX files"
    )


def load_fashion_mnist(
    data_dir: str | Path | None = None, *, flatten: bool = False
) -> EmbeddingDataset:
    """All 70,000 Fashion-MNIST images, (N, 1, 28, 28) in [0, 1] (or (N, 784) flattened);
    ``official_test`` marks the 10,000 test images."""
    folder = fashion_mnist_dir(data_dir)
    dataset = load_idx_folder(
        folder, flatten=flatten, name="fashion-mnist", class_names=FASHION_MNIST_CLASSES
    )
    dataset.source = f"Fashion-MNIST (Xiao et al. 2017), IDX files in {folder}"
    return dataset
