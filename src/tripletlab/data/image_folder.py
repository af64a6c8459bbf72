"""An image folder: one sub-folder per identity (the face / person re-id layout).

    root/
      alice/  001.jpg 002.png …
      bob/    a.jpg …

Every file with an image suffix is opened with Pillow; all images are converted to one
mode — grey ("L") when every image is grey, else RGB — and resized (bilinear) to one size:
``image_size``, or by default the most common size among the images. Pixels are scaled to
[0, 1] and returned as (N, C, H, W) float32.

Unreadable files (corrupt, truncated, not really images) are reported by name. With
``on_unreadable="skip"`` (the default) the rest are used and the skipped files are listed
in the dataset's ``warnings`` (and in a Python warning), because one bad file in thousands
should not stop a run; ``on_unreadable="error"`` refuses the folder instead, for users who
want a clean dataset guaranteed. Files without an image suffix are ignored (and counted in
``warnings``); a class whose images are all unreadable is dropped with a warning.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from tripletlab.data.embedding_dataset import EmbeddingDataset
from tripletlab.errors import DataError, InvalidArgumentError

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm"}
)
ON_UNREADABLE = ("skip", "error")
_MAX_NAMED = 10


def load_image_folder(
    root: str | Path,
    *,
    image_size: tuple[int, int] | int | None = None,
    on_unreadable: str = "skip",
    flatten: bool = False,
) -> EmbeddingDataset:
    """Images of ``root/<class>/<file>`` with the sub-folder names as classes.

    Args:
        root: the folder holding one sub-folder per class.
        image_size: (H, W) (or one int for square) to resize to; default: the most common
            size among the images.
        on_unreadable: ``"skip"`` (use the readable files, list the others in
            ``warnings``) or ``"error"`` (raise a DataError naming them).
        flatten: return (N, C·H·W) vectors.

    Raises:
        DataError: no such folder, no class sub-folder, no readable image, a single class,
            or (with ``on_unreadable="error"``) any unreadable file.
    """
    if on_unreadable not in ON_UNREADABLE:
        raise InvalidArgumentError(
            f"on_unreadable must be one of {ON_UNREADABLE}; got {on_unreadable!r}"
        )
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(
            f"{root} has no class sub-folders: expected one sub-folder per class/identity "
            "holding its images"
        )
    Image = _pillow()
    images, labels, notes, unreadable, ignored = [], [], [], [], 0
    class_names: list[str] = []
    for class_dir in class_dirs:
        files = sorted(
            p for p in class_dir.rglob("*") if p.is_file() and not p.name.startswith(".")
        )
        kept = 0
        for file in files:
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                ignored += 1
                continue
            try:
                with Image.open(file) as opened:
                    opened.load()
                    image = opened.copy()
            except Exception as error:  # Pillow raises many types for corrupt files
                unreadable.append(f"{file.relative_to(root)} ({type(error).__name__}: {error})")
                continue
            images.append(image)
            labels.append(len(class_names))
            kept += 1
        if kept:
            class_names.append(class_dir.name)
        else:
            notes.append(f"class {class_dir.name!r} has no readable image and was left out")
    if unreadable and on_unreadable == "error":
        raise DataError(
            f"{len(unreadable)} unreadable file(s) in {root}: {_list(unreadable)} "
            "(on_unreadable='error'; use 'skip' to train on the readable ones)"
        )
    if unreadable:
        notes.insert(0, f"skipped {len(unreadable)} unreadable file(s): {_list(unreadable)}")
    if ignored:
        notes.append(f"ignored {ignored} file(s) without an image suffix")
    if not images:
        raise DataError(f"{root} holds no readable image ({', '.join(notes) or 'empty'})")
    size = _target_size(images, image_size)
    mode = "L" if all(im.mode in ("L", "1", "I", "I;16", "F") for im in images) else "RGB"
    array = np.stack([_to_array(im, mode, size, Image) for im in images])
    features = torch.from_numpy(array)
    if flatten:
        features = features.reshape(len(features), -1)
    for note in notes:
        warnings.warn(f"{root}: {note}", stacklevel=2)
    return EmbeddingDataset(
        features,
        torch.tensor(labels, dtype=torch.long),
        class_names,
        root.name,
        f"image folder {root} ({mode}, {size[0]}×{size[1]})",
        warnings=notes,
    )


def _pillow():
    try:
        from PIL import Image
    except ImportError:  # Pillow comes with matplotlib, a dependency; this is a broken install
        raise DataError("reading image folders needs Pillow: pip install pillow") from None
    return Image


def _target_size(images: list, image_size: tuple[int, int] | int | None) -> tuple[int, int]:
    """(H, W): the requested size, else the most common size among the images."""
    if image_size is None:
        (width, height), _ = Counter(im.size for im in images).most_common(1)[0]
        return height, width
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    height, width = (int(v) for v in image_size)
    if height < 1 or width < 1:
        raise InvalidArgumentError(f"image_size must be positive; got {image_size!r}")
    return height, width


def _to_array(image, mode: str, size: tuple[int, int], Image) -> np.ndarray:
    """One image as (C, H, W) float32 in [0, 1]."""
    if image.mode in ("I", "I;16", "F"):  # 16-bit / float grey: rescale to 8 bits first
        values = np.asarray(image, dtype=np.float64)
        top = values.max() or 1.0
        image = Image.fromarray((values / top * 255).astype(np.uint8))
    image = image.convert(mode)
    height, width = size
    if image.size != (width, height):
        image = image.resize((width, height), Image.BILINEAR)
    array = np.asarray(image, dtype=np.float32) / 255.0
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _list(items: list[str]) -> str:
    shown = "; ".join(items[:_MAX_NAMED])
    return shown + (f"; … and {len(items) - _MAX_NAMED} more" if len(items) > _MAX_NAMED else "")
