"""Field dataset layouts in a run: train on a layout's train split, embed any split by file.

A ``--dataset`` of the form ``market1501:PATH``, ``lfw:PATH``, ``cub200:PATH``,
``cars196:PATH``, ``sop:PATH``, ``inshop:PATH`` (any name of
:data:`~tripletlab.data.layouts.LAYOUT_LOADERS`) or a manifest ``.csv`` (a CSV whose header
has a ``path`` column) is read with :func:`~tripletlab.data.layouts.load_layout`.

* :func:`layout_training_set` — the layout's ``train`` split decoded to a dataset: re-id junk
  (−1) and distractors (0) dropped, labels re-encoded 0…C−1 for the P×K sampler.
* :func:`decode_split` — the images of a split as one (N, C, H, W) array in [0, 1].
* :func:`embed_split` — a split's embeddings with a trained model, decoded in chunks so only
  one chunk of pixels is held at a time.

Example:
    >>> is_layout_dataset("cub200:/data/CUB_200_2011"), is_layout_dataset("digits")
    (True, False)
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from tripletlab.data.embedding_dataset import EmbeddingDataset
from tripletlab.data.layouts import Layout, LayoutSplit, is_layout_spec, load_layout
from tripletlab.data.layouts.reid import REID_LAYOUTS
from tripletlab.errors import DataError

__all__ = [
    "decode_split",
    "embed_split",
    "is_layout_dataset",
    "layout_training_set",
    "load_run_layout",
]

#: Images decoded per embedding chunk: bounds the pixels held at once (256 × 3 × 256² floats
#: is 200 MB at re-id sizes).
EMBED_CHUNK = 256
#: The label of junk images in every layout (Market-1501's −1; a manifest's too).
JUNK_LABEL = -1
#: Re-id identities below this are junk (−1) or distractors (0): never training identities.
_FIRST_REID_IDENTITY = 1


def _is_manifest(spec: str) -> bool:
    """A ``.csv`` whose header names a ``path`` column (a features CSV has none)."""
    path = Path(spec).expanduser()
    if path.suffix.lower() != ".csv" or not path.is_file():
        return False
    with open(path, newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle), [])
    return "path" in [h.strip().lower() for h in header]


def is_layout_dataset(spec: str | None) -> bool:
    """True for a ``<layout>:PATH`` spec or a manifest CSV (``path,label,…`` columns)."""
    return spec is not None and (is_layout_spec(spec) or _is_manifest(spec))


def load_run_layout(spec: str) -> Layout:
    """The layout of ``spec`` (a manifest CSV is read as ``manifest:FILE``)."""
    return load_layout(spec if is_layout_spec(spec) else f"manifest:{spec}")


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"{path}: cannot read the image ({exc})") from None


def decode_split(
    split: LayoutSplit,
    in_shape: tuple[int, ...] | None = None,
    rows: slice | None = None,
) -> np.ndarray:
    """The images of ``split`` (or its ``rows``) as a float32 (N, C, H, W) array in [0, 1].

    ``in_shape`` = (C, H, W) converts every image to C channels (1: grey, else RGB) and H × W;
    without it: RGB unless every image is grey, at the most common size.
    """
    from PIL import Image

    images = [_open(p) for p in split.paths[rows or slice(None)]]
    if not images:
        raise DataError("the split holds no image")
    if in_shape is not None and len(in_shape) == 3:
        mode, (height, width) = ("L" if in_shape[0] == 1 else "RGB"), in_shape[1:]
    else:
        mode = "L" if all(im.mode == "L" for im in images) else "RGB"
        (width, height), _ = Counter(im.size for im in images).most_common(1)[0]
    out = []
    for image in images:
        converted = image.convert(mode)
        if converted.size != (width, height):
            converted = converted.resize((width, height), Image.Resampling.BILINEAR)
        array = np.asarray(converted, dtype=np.float32) / 255.0
        out.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
    return np.stack(out)


def embed_split(
    embed: Callable[[np.ndarray], Tensor], split: LayoutSplit, in_shape: tuple[int, ...]
) -> Tensor:
    """(N, D) embeddings of a split's images by ``embed`` (a trained model's ``embed``)."""
    parts = [
        embed(decode_split(split, in_shape, slice(start, start + EMBED_CHUNK)))
        for start in range(0, len(split), EMBED_CHUNK)
    ]
    if not parts:
        raise DataError("the split holds no image")
    return torch.cat(parts)


def layout_training_set(spec: str) -> EmbeddingDataset:
    """The ``train`` split of a layout as a dataset, labels 0…C−1 (junk −1 dropped; re-id
    file-name layouts also drop distractors 0).

    Raises:
        DataError: a missing file, no ``train`` split (LFW is evaluation only), fewer than two
            identities left.
    """
    layout = load_run_layout(spec)
    split = layout.split("train")
    if layout.name in REID_LAYOUTS:  # file-name identities: −1 junk, 0 distractors
        split = split.subset(split.labels >= _FIRST_REID_IDENTITY)
    else:  # a manifest numbers text labels from 0; only −1 is junk
        split = split.subset(split.labels != JUNK_LABEL)
    if len(np.unique(split.labels)) < 2:
        raise DataError(f"{spec}: the train split holds fewer than two identities")
    classes, encoded = np.unique(split.labels, return_inverse=True)
    names = [split.class_names.get(int(c), str(int(c))) for c in classes]
    return EmbeddingDataset(
        torch.from_numpy(decode_split(split)),
        torch.from_numpy(encoded.astype(np.int64)),
        names,
        layout.name,
        f"{layout.name} layout at {layout.root} (train split, {len(split)} images)",
    )
