"""A manifest CSV: any dataset as one row per image, for layouts tripletlab does not know.

Columns (a header row is required; names are case-insensitive):

==========  ========  =====================================================================
column      required  meaning
==========  ========  =====================================================================
``path``    yes       image path, relative to the CSV's folder (or absolute)
``label``   yes       identity / class: integers are kept as they are (−1 = junk); any
                      other text is numbered 0…C−1 in sorted order and kept as its name
``camera``  no        integer camera id (enables the re-id same-camera exclusion)
``split``   no        ``train`` / ``test`` / ``query`` / ``gallery`` (default ``test``)
``role``    no        ``query`` / ``gallery``: overrides ``split`` for that row
==========  ========  =====================================================================

The protocol follows from the splits: ``query`` + ``gallery`` with cameras → ``"reid"``;
``query`` + ``gallery`` without → ``"query_gallery"``; otherwise ``"self"`` on ``test``.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("a.png", "b.png"):
    ...     _ = (folder / name).write_bytes(b"")
    >>> _ = (folder / "m.csv").write_text("path,label\\na.png,cat\\nb.png,dog\\n")
    >>> layout = load_manifest(folder / "m.csv")
    >>> layout.protocol, layout.split("test").labels.tolist(), layout.split("test").class_names
    ('self', [0, 1], {0: 'cat', 1: 'dog'})
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from tripletlab.data.layouts.split import (
    SPLIT_NAMES,
    Layout,
    LayoutSplit,
    check_files_exist,
    require_file,
)
from tripletlab.errors import DataError

REQUIRED_COLUMNS = ("path", "label")
_ROLES = ("query", "gallery")
_DEFAULT_SPLIT = "test"


def load_manifest(path: str | Path) -> Layout:
    """The splits a manifest CSV describes (see the module docstring).

    Raises:
        DataError: the file, a required column or a listed image is missing; a bad camera,
            split or role value (naming the line).
    """
    path = Path(path).expanduser()
    require_file(path, "manifest CSV")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = {c.strip().lower(): c for c in reader.fieldnames or []}
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise DataError(f"{path}: missing column {missing[0]!r} (header: {reader.fieldnames})")
        rows = [
            {key: (row.get(original) or "").strip() for key, original in columns.items()}
            for row in reader
        ]
    if not rows:
        raise DataError(f"{path}: no rows below the header")
    has_cameras = "camera" in columns
    labels, names = _encode_labels([r["label"] for r in rows])
    groups: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        groups.setdefault(_split_of(row, path, index + 2), []).append(index)
    paths = [_resolve(path.parent, r["path"]) for r in rows]
    check_files_exist(paths, f"images of {path.name}")
    cameras = (
        np.array([_camera(r, path, i + 2) for i, r in enumerate(rows)]) if has_cameras else None
    )
    whole = LayoutSplit(paths, labels, cameras, names)
    splits = {name: whole.subset(np.array(index)) for name, index in sorted(groups.items())}
    return Layout("manifest", path, splits, _protocol(splits, has_cameras))


def _encode_labels(texts: list[str]) -> tuple[np.ndarray, dict[int, str]]:
    try:
        return np.array([int(t) for t in texts], dtype=np.int64), {}
    except ValueError:
        names = sorted(set(texts))
        index = {name: i for i, name in enumerate(names)}
        return np.array([index[t] for t in texts], dtype=np.int64), dict(enumerate(names))


def _split_of(row: dict[str, str], path: Path, line: int) -> str:
    role = row.get("role", "")
    if role:
        if role not in _ROLES:
            raise DataError(f"{path}, line {line}: role {role!r} is not query or gallery")
        return role
    split = row.get("split", "") or _DEFAULT_SPLIT
    if split not in SPLIT_NAMES:
        raise DataError(f"{path}, line {line}: split {split!r} is not one of {SPLIT_NAMES}")
    return split


def _camera(row: dict[str, str], path: Path, line: int) -> int:
    try:
        return int(row["camera"])
    except ValueError:
        raise DataError(
            f"{path}, line {line}: camera {row['camera']!r} is not an integer"
        ) from None


def _resolve(folder: Path, relative: str) -> Path:
    candidate = Path(relative).expanduser()
    return candidate if candidate.is_absolute() else folder / candidate


def _protocol(splits: dict[str, LayoutSplit], has_cameras: bool) -> str:
    if "query" in splits and "gallery" in splits:
        return "reid" if has_cameras else "query_gallery"
    if "query" in splits or "gallery" in splits:
        raise DataError("a manifest with a query role needs a gallery role too (and back)")
    return "self"
