"""Re-identification layouts: Market-1501, DukeMTMC-reID, MSMT17 and VeRi-776.

Identity and camera come from the file names, as in the official evaluation code and in
torchreid / fast-reid:

==============  ====================================  =====================================
layout          folders read (under ``root``)         file name → (identity, camera)
==============  ====================================  =====================================
market1501      ``bounding_box_train/``,              ``0002_c1s1_000451_03.jpg`` → (2, 1);
                ``bounding_box_test/``, ``query/``    ``-1_c1s1_…`` → (−1, 1) junk;
                                                      ``0000_…`` → (0, …) distractor
dukemtmc        the same three folders                ``0001_c2_f0046182.jpg`` → (1, 2)
veri            ``image_train/``, ``image_test/``,    ``0001_c001_00016450_0.jpg`` → (1, 1)
                ``image_query/``
msmt17          ``list_train.txt`` + ``list_val.txt`` ``0000/0000_000_01_0303morning_0015_0.jpg
                (train), ``list_query.txt``,          0`` → identity from the list's second
                ``list_gallery.txt``; images in       field, camera from the third ``_`` field
                ``train/`` & ``test/`` (V1) or        of the name (1-based, as named)
                ``mask_train_v2/`` & ``mask_test_v2/``
==============  ====================================  =====================================

Junk (−1) and distractor (0) images are *kept* with those labels: the re-id protocol
(:mod:`tripletlab.evaluate.reid`) ignores junk gallery images and keeps distractors as
negatives, as Market-1501's official ``evaluation.m`` does. Use ``split.subset(split.labels
> 0)`` to drop both (e.g. to train). The folder ``root`` may also be the parent of a single
``Market-1501-v15.09.15``-style folder holding these.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from tripletlab.data.layouts.split import (
    Layout,
    LayoutSplit,
    check_files_exist,
    read_rows,
    require_dir,
    require_file,
)
from tripletlab.errors import DataError

#: ``<id>_c<camera>…``: the identity may be −1 (junk); torchreid's pattern for all four sets.
_NAME_PATTERN = re.compile(r"^(-?\d+)_c(\d+)")
_IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})

#: Folder names of the train / gallery / query images per file-name layout.
FOLDER_LAYOUTS: dict[str, tuple[str, str, str]] = {
    "market1501": ("bounding_box_train", "bounding_box_test", "query"),
    "dukemtmc": ("bounding_box_train", "bounding_box_test", "query"),
    "veri": ("image_train", "image_test", "image_query"),
}
REID_LAYOUTS: tuple[str, ...] = (*FOLDER_LAYOUTS, "msmt17")
_MSMT_DIRS = (("train", "test"), ("mask_train_v2", "mask_test_v2"))


def parse_reid_name(name: str) -> tuple[int, int]:
    """(identity, camera) of a re-id file name such as ``0002_c1s1_000451_03.jpg``.

    Raises:
        DataError: the name does not start with ``<id>_c<camera>``.

    Example:
        >>> parse_reid_name("0002_c1s1_000451_03.jpg"), parse_reid_name("-1_c3s2_000001_01.jpg")
        ((2, 1), (-1, 3))
        >>> parse_reid_name("0776_c014_00071910_0.jpg")
        (776, 14)
    """
    match = _NAME_PATTERN.match(name)
    if match is None:
        raise DataError(f"re-id file name {name!r} does not start with <identity>_c<camera>")
    return int(match.group(1)), int(match.group(2))


def read_reid_folder(folder: Path) -> LayoutSplit:
    """Every image of ``folder`` (sorted by name) with identity and camera from its name."""
    require_dir(folder, "re-id image folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"no images (.jpg/.png/.bmp) in re-id folder {folder}")
    parsed = [parse_reid_name(p.name) for p in files]
    return LayoutSplit(
        files,
        np.array([pid for pid, _ in parsed], dtype=np.int64),
        np.array([cam for _, cam in parsed], dtype=np.int64),
    )


def load_reid_layout(root: str | Path, name: str = "market1501") -> Layout:
    """A re-id dataset's train / query / gallery splits (see the module docstring).

    Args:
        root: the dataset folder (or its parent holding exactly one dataset folder).
        name: ``"market1501"``, ``"dukemtmc"``, ``"veri"`` or ``"msmt17"``.

    Returns:
        :class:`Layout` with splits ``train``, ``query``, ``gallery`` and protocol ``"reid"``.

    Raises:
        DataError: a missing folder or index file (named), or an unparsable file name.
    """
    if name not in REID_LAYOUTS:
        raise DataError(f"unknown re-id layout {name!r}; choose one of {', '.join(REID_LAYOUTS)}")
    root = Path(root).expanduser()
    require_dir(root, f"{name} dataset folder")
    if name == "msmt17":
        return _load_msmt17(_dataset_folder(root, ("list_query.txt",)))
    train_dir, gallery_dir, query_dir = FOLDER_LAYOUTS[name]
    base = _dataset_folder(root, (query_dir,))
    splits = {
        "train": read_reid_folder(base / train_dir),
        "query": read_reid_folder(base / query_dir),
        "gallery": read_reid_folder(base / gallery_dir),
    }
    return Layout(name, base, splits, "reid")


def _dataset_folder(root: Path, marker: tuple[str, ...]) -> Path:
    """``root`` when it holds ``marker``, else its only sub-folder that does."""
    if all((root / m).exists() for m in marker):
        return root
    inner = [d for d in sorted(root.iterdir()) if d.is_dir() and (d / marker[0]).exists()]
    if len(inner) == 1:
        return inner[0]
    raise DataError(f"missing {marker[0]} in {root} (nor in exactly one of its sub-folders)")


def _load_msmt17(base: Path) -> Layout:
    train_dir, test_dir = next(
        ((base / tr, base / te) for tr, te in _MSMT_DIRS if (base / tr).is_dir()),
        (base / "train", base / "test"),
    )
    require_dir(train_dir, "MSMT17 train image folder (train/ or mask_train_v2/)")
    require_dir(test_dir, "MSMT17 test image folder (test/ or mask_test_v2/)")
    train = _read_msmt_list([base / "list_train.txt", base / "list_val.txt"], train_dir)
    splits = {
        "train": train,
        "query": _read_msmt_list([base / "list_query.txt"], test_dir),
        "gallery": _read_msmt_list([base / "list_gallery.txt"], test_dir),
    }
    return Layout("msmt17", base, splits, "reid")


def _read_msmt_list(lists: list[Path], image_dir: Path) -> LayoutSplit:
    """Rows ``<relative path> <identity>``; the camera is the name's third ``_`` field."""
    paths: list[Path] = []
    labels: list[int] = []
    cameras: list[int] = []
    for index, list_file in enumerate(lists):
        # list_val.txt is optional (a held-out part of the training identities).
        if index > 0 and not list_file.exists():
            continue
        for fields in read_rows(require_file(list_file, "MSMT17 list"), 2):
            parts = Path(fields[0]).name.split("_")
            if len(parts) < 3 or not parts[2].isdigit():
                raise DataError(f"{list_file}: cannot read the camera of {fields[0]!r}")
            paths.append(image_dir / fields[0])
            labels.append(int(fields[1]))
            cameras.append(int(parts[2]))
    check_files_exist(paths, f"images of {lists[0].name}")
    return LayoutSplit(paths, np.array(labels), np.array(cameras))
