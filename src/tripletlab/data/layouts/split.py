"""The plain data structures every field layout returns: :class:`LayoutSplit` and :class:`Layout`.

A layout reader (Market-1501, LFW, CUB-200-2011, …) reads the index files and folder names the
dataset's authors ship and returns file *paths* with their labels — never pixels. An image
dataset decodes the paths lazily; an evaluation protocol uses the labels, cameras and pairs.

Split names used by every reader:

============  ================================================================================
``train``     images to train on (class-disjoint from ``test`` in the DML benchmarks)
``test``      the evaluation set of a query = gallery protocol (CUB, Cars, SOP: each image
              queries all the others)
``query``     probes of a query ≠ gallery protocol (re-id, In-shop)
``gallery``   what the probes are searched in
============  ================================================================================

Labels are the dataset's own integer identities (Market-1501's person id, CUB's class id), so
a table can name them; ``-1`` marks re-id *junk* images and ``0`` Market-1501's *distractors*,
as in the official evaluation scripts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tripletlab.errors import DataError

#: How many missing files an error names before it says "and N more".
_MAX_NAMED_MISSING = 3

SPLIT_NAMES: tuple[str, ...] = ("train", "test", "query", "gallery")


@dataclass(frozen=True, eq=False)
class LayoutSplit:
    """One split of a layout: image paths with their labels (and cameras).

    Attributes:
        paths: N absolute image paths.
        labels: (N,) int64 identities / classes as the dataset numbers them (−1 = junk).
        cameras: (N,) int64 camera ids (re-id layouts, or a manifest's camera column), else
            None.
        class_names: optional {label: name} for reports (CUB's ``001.Black_footed_Albatross``).

    Example:
        >>> s = LayoutSplit([Path("/a/1.jpg"), Path("/a/2.jpg")], np.array([3, 3]))
        >>> len(s), s.n_classes, s.cameras is None
        (2, 1, True)
    """

    paths: list[Path]
    labels: np.ndarray
    cameras: np.ndarray | None = None
    class_names: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        object.__setattr__(self, "labels", labels)
        if len(labels) != len(self.paths):
            raise DataError(f"{len(self.paths)} paths but {len(labels)} labels")
        if self.cameras is not None:
            cameras = np.asarray(self.cameras, dtype=np.int64).reshape(-1)
            if len(cameras) != len(labels):
                raise DataError(f"{len(labels)} labels but {len(cameras)} cameras")
            object.__setattr__(self, "cameras", cameras)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def n_classes(self) -> int:
        """Distinct labels, junk (−1) not counted."""
        return len(np.unique(self.labels[self.labels != -1]))

    def subset(self, keep: np.ndarray) -> LayoutSplit:
        """The rows where the boolean mask (or index array) ``keep`` selects."""
        index = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep)
        cameras = None if self.cameras is None else self.cameras[index]
        return LayoutSplit(
            [self.paths[i] for i in index], self.labels[index], cameras, self.class_names
        )


@dataclass(frozen=True, eq=False)
class VerificationPairs:
    """Labelled image pairs of a verification protocol (LFW's ``pairs.txt``).

    Attributes:
        first, second: (P,) int64 indices into the layout's ``test`` split.
        same: (P,) bool, True for a matched pair (one identity).
        folds: (P,) int64 fold of each pair, 0…F−1.

    Example:
        >>> p = VerificationPairs(np.array([0]), np.array([1]), np.array([True]), np.array([0]))
        >>> len(p), p.n_folds
        (1, 1)
    """

    first: np.ndarray
    second: np.ndarray
    same: np.ndarray
    folds: np.ndarray

    def __len__(self) -> int:
        return len(self.first)

    @property
    def n_folds(self) -> int:
        return len(np.unique(self.folds))


@dataclass(frozen=True, eq=False)
class Layout:
    """A dataset read from its authors' file layout.

    Attributes:
        name: the layout (``"market1501"``, ``"lfw"``, ``"cub200"``…).
        root: the folder (or manifest file) it was read from.
        splits: {split name: :class:`LayoutSplit`} with names from :data:`SPLIT_NAMES`.
        protocol: how the field evaluates it — ``"reid"`` (query vs gallery, same-camera
            exclusion, junk), ``"query_gallery"`` (In-shop: query vs gallery),
            ``"self"`` (CUB/Cars/SOP: every test image queries the others) or
            ``"verification"`` (LFW: pairs).
        pairs: the verification pairs (indices into ``splits["test"]``), else None.

    Example:
        >>> s = LayoutSplit([Path("/x.jpg")], np.array([1]))
        >>> Layout("toy", Path("/"), {"test": s}, "self").split("test") is s
        True
    """

    name: str
    root: Path
    splits: dict[str, LayoutSplit]
    protocol: str
    pairs: VerificationPairs | None = None

    def split(self, name: str) -> LayoutSplit:
        """The split called ``name``; a DataError naming the available ones otherwise."""
        if name not in self.splits:
            raise DataError(
                f"layout {self.name!r} at {self.root} has no {name!r} split "
                f"(it has: {', '.join(self.splits) or 'none'})"
            )
        return self.splits[name]


def require_file(path: Path, what: str) -> Path:
    """``path`` if it is a file, else a one-line DataError naming it and what it is."""
    if not path.is_file():
        raise DataError(f"missing {what}: {path} does not exist")
    return path


def require_dir(path: Path, what: str) -> Path:
    """``path`` if it is a folder, else a one-line DataError naming it."""
    if not path.is_dir():
        raise DataError(f"missing {what}: folder {path} does not exist")
    return path


def first_existing(candidates: Sequence[Path], what: str) -> Path:
    """The first of ``candidates`` that exists; a DataError listing them all otherwise."""
    for path in candidates:
        if path.exists():
            return path
    names = " or ".join(str(p) for p in candidates)
    raise DataError(f"missing {what}: none of {names} exists")


def check_files_exist(paths: Iterable[Path], what: str) -> None:
    """A DataError naming the first missing files (and how many) when any path is absent."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        named = ", ".join(str(p) for p in missing[:_MAX_NAMED_MISSING])
        more = len(missing) - _MAX_NAMED_MISSING
        tail = f" and {more} more" if more > 0 else ""
        raise DataError(f"{len(missing)} {what} listed but missing: {named}{tail}")


def read_rows(path: Path, min_fields: int, *, skip: int = 0) -> list[list[str]]:
    """Whitespace-separated rows of an index file (blank lines skipped, ``skip`` header lines).

    Raises:
        DataError: a row with fewer than ``min_fields`` fields (naming file and line).
    """
    rows = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines[skip:], start=skip + 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < min_fields:
            raise DataError(
                f"{path}, line {number}: expected {min_fields} fields, got {line.strip()!r}"
            )
        rows.append(fields)
    return rows
