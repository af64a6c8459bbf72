"""Field dataset layouts read from the files their authors ship (nothing is downloaded).

:func:`load_layout` reads ``"<layout>:<path>"`` specs such as ``market1501:/data/Market-1501``
and returns a :class:`Layout` of :class:`LayoutSplit` (paths, labels, cameras) plus LFW's
verification pairs. Layouts: ``market1501``, ``dukemtmc``, ``msmt17``, ``veri`` (re-id),
``lfw`` (face verification), ``cub200``, ``cars196``, ``sop``, ``inshop`` (DML benchmarks)
and ``manifest`` (a CSV with path, label and optional camera / split / role columns).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tripletlab.data.layouts.dml import (
    load_cars196_layout,
    load_cub200_layout,
    load_inshop_layout,
    load_sop_layout,
)
from tripletlab.data.layouts.lfw import load_lfw_layout, read_pairs_file
from tripletlab.data.layouts.manifest import load_manifest
from tripletlab.data.layouts.reid import REID_LAYOUTS, load_reid_layout, parse_reid_name
from tripletlab.data.layouts.split import SPLIT_NAMES, Layout, LayoutSplit, VerificationPairs
from tripletlab.errors import DataError


def _reid(name: str) -> Callable[[Path], Layout]:
    return lambda root: load_reid_layout(root, name)


LAYOUT_LOADERS: dict[str, Callable[[Path], Layout]] = {
    **{name: _reid(name) for name in REID_LAYOUTS},
    "lfw": load_lfw_layout,
    "cub200": load_cub200_layout,
    "cars196": load_cars196_layout,
    "sop": load_sop_layout,
    "inshop": load_inshop_layout,
    "manifest": load_manifest,
}


def is_layout_spec(spec: str) -> bool:
    """True for ``"<known layout>:<path>"`` (so a plain path or a built-in name is not one).

    Example:
        >>> is_layout_spec("market1501:/data/m"), is_layout_spec("fashion-mnist")
        (True, False)
    """
    name, sep, _ = spec.partition(":")
    return bool(sep) and name in LAYOUT_LOADERS


def load_layout(spec: str) -> Layout:
    """The layout named by ``"<layout>:<path>"`` (e.g. ``"cub200:~/data/CUB_200_2011"``).

    A ``.csv`` path without a layout name is read as a manifest.

    Raises:
        DataError: an unknown layout name, or whatever the layout's reader reports missing.
    """
    name, sep, path = spec.partition(":")
    if not sep:
        if spec.lower().endswith(".csv"):
            return load_manifest(Path(spec))
        raise DataError(f"dataset layout {spec!r} is not '<layout>:<path>'")
    if name not in LAYOUT_LOADERS:
        raise DataError(
            f"unknown dataset layout {name!r}; choose one of {', '.join(LAYOUT_LOADERS)}"
        )
    return LAYOUT_LOADERS[name](Path(path).expanduser())


__all__ = [
    "LAYOUT_LOADERS",
    "SPLIT_NAMES",
    "Layout",
    "LayoutSplit",
    "VerificationPairs",
    "is_layout_spec",
    "load_cars196_layout",
    "load_cub200_layout",
    "load_inshop_layout",
    "load_layout",
    "load_lfw_layout",
    "load_manifest",
    "load_reid_layout",
    "load_sop_layout",
    "parse_reid_name",
    "read_pairs_file",
]
