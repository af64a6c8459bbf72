"""The LFW verification layout: ``pairs.txt`` (10 folds of matched / mismatched pairs) and the
image folder ``NAME/NAME_0001.jpg``.

``pairs.txt`` (Huang et al. 2007, "Labeled Faces in the Wild", view 2) begins with a line
``<folds> <pairs per kind>`` (``10 300``); then, for each fold, that many *matched* lines
``name  n1  n2`` followed by that many *mismatched* lines ``name1  n1  name2  n2``. Image
``n`` of ``name`` is ``<images>/name/name_{n:04d}.jpg``. The images folder is the first of
``root/lfw``, ``root/lfw-deepfunneled``, ``root/lfw_funneled`` and ``root`` that holds the
first image named by the pairs. A fold whose matched / mismatched lines are not all present
(a truncated file) is an error naming the line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tripletlab.data.layouts.split import (
    Layout,
    LayoutSplit,
    VerificationPairs,
    check_files_exist,
    read_rows,
    require_dir,
    require_file,
)
from tripletlab.errors import DataError

IMAGE_FOLDERS: tuple[str, ...] = ("lfw", "lfw-deepfunneled", "lfw_funneled", ".")
_MATCHED_FIELDS = 3
_MISMATCHED_FIELDS = 4


def lfw_image_name(name: str, number: int) -> str:
    """Relative path of image ``number`` of ``name``.

    Example:
        >>> lfw_image_name("Aaron_Peirsol", 1)
        'Aaron_Peirsol/Aaron_Peirsol_0001.jpg'
    """
    return f"{name}/{name}_{number:04d}.jpg"


def read_pairs_file(path: Path) -> tuple[list[tuple[str, str, bool]], np.ndarray]:
    """The pairs of ``pairs.txt`` as (relative path 1, relative path 2, matched) and their folds.

    Raises:
        DataError: a bad header, or a fold with the wrong kind or number of lines.
    """
    rows = read_rows(require_file(path, "LFW pairs file"), 1)
    header = rows[0]
    if len(header) == 1:  # pairsDevTrain/Test.txt: one fold of N matched + N mismatched
        n_folds, per_kind = 1, _int(header[0], path, 1)
    elif len(header) == 2:
        n_folds, per_kind = _int(header[0], path, 1), _int(header[1], path, 1)
    else:
        raise DataError(f"{path}, line 1: expected '<folds> <pairs per kind>', got {header}")
    body = rows[1:]
    expected = n_folds * 2 * per_kind
    if len(body) != expected:
        raise DataError(
            f"{path}: header announces {n_folds} folds × 2 × {per_kind} = {expected} pairs, "
            f"file has {len(body)}"
        )
    pairs: list[tuple[str, str, bool]] = []
    folds = np.repeat(np.arange(n_folds), 2 * per_kind)
    for index, fields in enumerate(body):
        matched = (index % (2 * per_kind)) < per_kind
        line = index + 2
        if matched and len(fields) == _MATCHED_FIELDS:
            name = fields[0]
            pairs.append(
                (
                    lfw_image_name(name, _int(fields[1], path, line)),
                    lfw_image_name(name, _int(fields[2], path, line)),
                    True,
                )
            )
        elif not matched and len(fields) == _MISMATCHED_FIELDS:
            pairs.append(
                (
                    lfw_image_name(fields[0], _int(fields[1], path, line)),
                    lfw_image_name(fields[2], _int(fields[3], path, line)),
                    False,
                )
            )
        else:
            kind = "matched 'name n1 n2'" if matched else "mismatched 'name1 n1 name2 n2'"
            raise DataError(f"{path}, line {line}: expected a {kind} pair, got {fields}")
    return pairs, folds


def _int(text: str, path: Path, line: int) -> int:
    try:
        return int(text)
    except ValueError:
        raise DataError(f"{path}, line {line}: {text!r} is not an integer") from None


def load_lfw_layout(root: str | Path, pairs_file: str = "pairs.txt") -> Layout:
    """LFW's verification pairs and the images they use.

    Args:
        root: the folder holding ``pairs.txt`` and the image folder (see the module docstring).
        pairs_file: the pairs file's name inside ``root`` (``pairsDevTest.txt`` for view 1).

    Returns:
        :class:`Layout` with protocol ``"verification"``: split ``test`` holds every image
        the pairs use (sorted by path; labels number the identities 0…C−1 in name order,
        ``class_names`` maps them back), and ``pairs`` indexes into it.

    Raises:
        DataError: the pairs file or an image it names is missing (named).
    """
    root = Path(root).expanduser()
    require_dir(root, "LFW dataset folder")
    pairs, folds = read_pairs_file(root / pairs_file)
    if not pairs:
        raise DataError(f"{root / pairs_file} holds no pairs")
    images = _image_folder(root, pairs[0][0])
    relative = sorted({p for first, second, _ in pairs for p in (first, second)})
    position = {rel: i for i, rel in enumerate(relative)}
    paths = [images / rel for rel in relative]
    check_files_exist(paths, f"images of {pairs_file}")
    names = sorted({rel.split("/")[0] for rel in relative})
    label_of = {name: i for i, name in enumerate(names)}
    labels = np.array([label_of[rel.split("/")[0]] for rel in relative])
    split = LayoutSplit(paths, labels, class_names=dict(enumerate(names)))
    verification = VerificationPairs(
        np.array([position[a] for a, _, _ in pairs], dtype=np.int64),
        np.array([position[b] for _, b, _ in pairs], dtype=np.int64),
        np.array([same for _, _, same in pairs], dtype=bool),
        folds.astype(np.int64),
    )
    return Layout("lfw", root, {"test": split}, "verification", verification)


def _image_folder(root: Path, first_image: str) -> Path:
    for name in IMAGE_FOLDERS:
        if (root / name / first_image).is_file():
            return root if name == "." else root / name
    tried = ", ".join(str(root / name / first_image) for name in IMAGE_FOLDERS)
    raise DataError(f"missing LFW image {first_image}: looked for {tried}")
