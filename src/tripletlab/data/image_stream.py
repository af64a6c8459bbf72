"""A streaming image dataset: file paths and labels in memory, pixels decoded on demand.

:func:`stream_image_folder` scans ``root/<class>/<file>`` (the layout of
:mod:`tripletlab.data.image_folder`) and returns an :class:`ImageFileDataset` that keeps only
the relative file names (one numpy byte-string array) and the labels (one int64 array).
``dataset[i]`` opens the file with Pillow, converts it to RGB and resizes it to
``image_size`` = (H, W) — any aspect ratio; the image is stretched, not cropped, so every
sample has the same shape and a batch stacks — and returns ``(uint8 tensor (3, H, W), label)``.
uint8 keeps the copy from a DataLoader worker to the main process 4× smaller than float32;
:mod:`tripletlab.data.augment` converts and normalises on the device.

Modes: L, 1, RGB, CMYK, YCbCr → RGB; RGBA, LA, PA and palette images with transparency
are composited over white (a transparent product photo background is white, not black);
16-bit (I;16), 32-bit integer (I) and float (F) grey images are scaled by their maximum to
8 bits first, as :func:`~tripletlab.data.image_folder.load_image_folder` does.

Why numpy arrays and not Python lists: DataLoader workers are forked; touching a Python
object updates its reference count, which copies the memory page it lives on into every
worker (pytorch/pytorch#13246), so a list of 10⁶ paths grows every worker's RSS over an
epoch. One numpy array is a single object.

Unreadable files: the scan opens every file's header (cheap: no pixel is decoded), so files
that are not images are found up front and, per ``on_unreadable``, left out and listed in
``dataset.warnings`` ("skip") or refused with a DataError naming them ("error"). A file whose
header reads but whose pixels do not (a truncated JPEG) is only found when it is decoded:
with "error" the DataError names it; with "skip" the next readable file of the same class is
returned in its place (named once in a Python warning), so a P×K batch keeps its shape.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from tripletlab.data.image_folder import IMAGE_SUFFIXES, ON_UNREADABLE, _list, _pillow
from tripletlab.errors import DataError

__all__ = [
    "FolderScan",
    "ImageFileDataset",
    "decode_image",
    "image_size_pair",
    "scan_image_folder",
    "stream_image_folder",
]

WHITE = (255, 255, 255, 255)
#: Modes whose values exceed 8 bits and are scaled by the image's maximum to 0..255.
_WIDE_GREY_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


def image_size_pair(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``image_size`` as (H, W): an int gives a square, a pair is (H, W).

    Example:
        >>> image_size_pair(64), image_size_pair((48, 64))
        ((64, 64), (48, 64))
    """
    if isinstance(image_size, bool):
        raise DataError(f"image_size must be an int or (H, W); got {image_size!r}")
    if isinstance(image_size, (int, np.integer)):
        pair = (int(image_size), int(image_size))
    else:
        values = tuple(image_size)
        if len(values) != 2 or not all(isinstance(v, (int, np.integer)) for v in values):
            raise DataError(f"image_size must be an int or (H, W); got {image_size!r}")
        pair = (int(values[0]), int(values[1]))
    if min(pair) < 1:
        raise DataError(f"image_size must be positive; got {image_size!r}")
    return pair


def decode_image(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """The image at ``path`` as uint8 RGB pixels (H, W, 3) resized (bilinear) to ``size``.

    Raises whatever Pillow raises for a file it cannot read (callers name the file).

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> path = tempfile.mkdtemp() + "/grey.png"
        >>> Image.new("L", (8, 4), 200).save(path)
        >>> pixels = decode_image(path, (2, 3))
        >>> pixels.shape, int(pixels[0, 0, 0])
        ((2, 3, 3), 200)
    """
    Image = _pillow()
    height, width = size
    with Image.open(path) as opened:
        # JPEG only: decode at the smallest power-of-two scale still >= the target (much
        # faster for photos far larger than the training size); other formats ignore it.
        opened.draft("RGB", (width, height))
        image = _to_rgb(opened, Image)
        if image.size != (width, height):
            image = image.resize((width, height), Image.BILINEAR)
        return np.asarray(image, dtype=np.uint8)


def _to_rgb(image: Any, Image: Any) -> Any:
    if image.mode in _WIDE_GREY_MODES:
        values = np.asarray(image, dtype=np.float64)
        top = values.max() or 1.0
        image = Image.fromarray((values / top * 255).astype(np.uint8))
    if image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, WHITE)
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


@dataclass
class FolderScan:
    """What :func:`scan_image_folder` found: relative file names, labels, classes, notes."""

    root: Path
    files: np.ndarray  # (N,) bytes, UTF-8 paths relative to root
    labels: np.ndarray  # (N,) int64
    class_names: list[str]
    notes: list[str] = field(default_factory=list)


def scan_image_folder(root: str | Path, *, on_unreadable: str = "skip") -> FolderScan:
    """Files of ``root/<class>/…`` with an image suffix whose header Pillow can read.

    Classes are the sorted sub-folder names (hidden ones ignored), searched recursively.
    A class without a readable file is dropped (with a note); files without an image suffix
    are counted in a note.

    Raises:
        DataError: no such folder, no class sub-folder, no readable image, or (with
            ``on_unreadable="error"``) any file whose header cannot be read.
    """
    if on_unreadable not in ON_UNREADABLE:
        raise DataError(f"on_unreadable must be one of {ON_UNREADABLE}; got {on_unreadable!r}")
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
    files: list[bytes] = []
    labels: list[int] = []
    class_names: list[str] = []
    notes: list[str] = []
    unreadable: list[str] = []
    ignored = 0
    for class_dir in class_dirs:
        kept = 0
        for file in sorted(class_dir.rglob("*")):
            if not file.is_file() or file.name.startswith("."):
                continue
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                ignored += 1
                continue
            relative = file.relative_to(root)
            try:
                with Image.open(file) as opened:  # reads the header only
                    opened.size  # noqa: B018 - touching size fails on a broken header
            except Exception as error:  # Pillow raises many types for broken files
                unreadable.append(f"{relative} ({type(error).__name__}: {error})")
                continue
            files.append(str(relative).encode())
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
    if not files:
        raise DataError(f"{root} holds no readable image ({', '.join(notes) or 'empty'})")
    return FolderScan(root, np.array(files), np.array(labels, dtype=np.int64), class_names, notes)


class ImageFileDataset(Dataset):
    """Images decoded on demand: ``dataset[i]`` is ``(uint8 (3, H, W), int64 label)``.

    Args:
        root: folder the file names are relative to.
        files: (N,) relative file names (str or UTF-8 bytes).
        labels: (N,) integer labels in 0…C−1.
        class_names: the C class names.
        image_size: an int (square) or (H, W) that every image is resized to.
        on_unreadable: ``"skip"`` (serve the class's next readable image instead, warn once
            per file) or ``"error"`` (a DataError naming the file).
        name: short name for reports.
        warnings: what the scan left out and why.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> root = Path(tempfile.mkdtemp())
        >>> for cls in ("cat", "dog"):
        ...     (root / cls).mkdir()
        ...     Image.new("RGB", (40, 30), (255, 0, 0)).save(root / cls / "a.png")
        >>> ds = stream_image_folder(root, image_size=(24, 32))
        >>> image, label = ds[1]
        >>> tuple(image.shape), image.dtype, int(label), ds.class_names
        ((3, 24, 32), torch.uint8, 1, ['cat', 'dog'])
    """

    def __init__(
        self,
        root: str | Path,
        files: Sequence[str | bytes] | np.ndarray,
        labels: Sequence[int] | np.ndarray | Tensor,
        class_names: Sequence[str],
        image_size: int | Sequence[int],
        *,
        on_unreadable: str = "skip",
        name: str | None = None,
        warnings: Sequence[str] = (),
    ) -> None:
        if on_unreadable not in ON_UNREADABLE:
            raise DataError(f"on_unreadable must be one of {ON_UNREADABLE}; got {on_unreadable!r}")
        self.root = Path(root)
        self.files = np.array([f if isinstance(f, bytes) else str(f).encode() for f in files])
        label_array = np.asarray(
            labels.cpu().numpy() if isinstance(labels, Tensor) else labels, dtype=np.int64
        )
        if label_array.shape != (len(self.files),):
            raise DataError(
                f"{len(self.files)} files but labels of shape {tuple(label_array.shape)}"
            )
        if len(label_array) and (label_array.min() < 0 or label_array.max() >= len(class_names)):
            raise DataError(f"labels must lie in 0..{len(class_names) - 1}")
        self._labels = label_array
        self.class_names = list(class_names)
        self.image_size = image_size_pair(image_size)
        self.on_unreadable = on_unreadable
        self.name = name or self.root.name
        self.warnings = list(warnings)
        self._warned: set[int] = set()

    # -- the dataset protocol --------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        index = int(index)
        pixels = self._decode_or_substitute(index)
        image = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))
        return image, torch.tensor(self._labels[index], dtype=torch.int64)

    # -- what the trainer and the splits read ----------------------------------------------
    @property
    def labels(self) -> Tensor:
        """(N,) int64 labels (a fresh tensor; the dataset keeps a numpy array)."""
        return torch.from_numpy(self._labels.copy())

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """Shape of one sample: (3, H, W)."""
        return (3, *self.image_size)

    @property
    def source(self) -> str:
        height, width = self.image_size
        return f"image folder {self.root} (streamed, RGB, {height}×{width})"

    def path(self, index: int) -> Path:
        """The file of sample ``index``."""
        return self.root / self.files[int(index)].decode()

    def subset(self, indices: Tensor | Sequence[int], name: str | None = None) -> ImageFileDataset:
        """The samples at ``indices`` (class names and numbering kept)."""
        index = np.asarray(torch.as_tensor(indices, dtype=torch.long).numpy())
        return ImageFileDataset(
            self.root,
            self.files[index],
            self._labels[index],
            self.class_names,
            self.image_size,
            on_unreadable=self.on_unreadable,
            name=name or self.name,
            warnings=self.warnings,
        )

    # -- decoding --------------------------------------------------------------------------
    def _decode_or_substitute(self, index: int) -> np.ndarray:
        try:
            return decode_image(self.path(index), self.image_size)
        except Exception as error:  # Pillow raises many types for broken pixel data
            problem = f"cannot decode {self.path(index)} ({type(error).__name__}: {error})"
            if self.on_unreadable == "error":
                raise DataError(problem + " (on_unreadable='error')") from None
            self._warn_once(index, problem)
        same_class = np.flatnonzero(self._labels == self._labels[index])
        start = int(np.searchsorted(same_class, index))
        for other in np.roll(same_class, -start)[1:]:
            try:
                return decode_image(self.path(other), self.image_size)
            except Exception as error:
                self._warn_once(int(other), f"cannot decode {self.path(other)} ({error})")
        raise DataError(
            f"class {self.class_names[self._labels[index]]!r} has no decodable image "
            f"(last tried {self.path(index)})"
        )

    def _warn_once(self, index: int, problem: str) -> None:
        if index not in self._warned:
            self._warned.add(index)
            warnings.warn(f"{problem}; skipped (on_unreadable='skip')", stacklevel=3)


def stream_image_folder(
    root: str | Path,
    *,
    image_size: int | Sequence[int],
    on_unreadable: str = "skip",
) -> ImageFileDataset:
    """Scan ``root/<class>/<file>`` and return a dataset that decodes lazily.

    The scan's notes (skipped files, dropped classes) are in ``dataset.warnings`` and are
    also issued as one Python warning each.

    Raises:
        DataError: see :func:`scan_image_folder`; a bad ``image_size``.
    """
    size = image_size_pair(image_size)
    scan = scan_image_folder(root, on_unreadable=on_unreadable)
    for note in scan.notes:
        warnings.warn(f"{scan.root}: {note}", stacklevel=2)
    return ImageFileDataset(
        scan.root,
        scan.files,
        scan.labels,
        scan.class_names,
        size,
        on_unreadable=on_unreadable,
        warnings=scan.notes,
    )
