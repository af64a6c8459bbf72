"""A bundle: one folder with everything a recognizer needs, readable without torch.

    bundle/
      model.onnx        the exported embedder (dynamic batch axis)
      preprocess.json   how inputs become the model's input
      metadata.json     embedding dim, metric, normalisation, versions, provenance
      thresholds.json   verification / identification distance thresholds (edit to tune)
      gallery.sqlite    the enrolled identities (see :mod:`tripletlab.deploy.gallery_store`)

:func:`make_bundle` copies an exported folder (or exports a run first — that step needs
torch), writes ``thresholds.json`` and enrols a gallery image folder (one sub-folder per
identity, as the training data) into ``gallery.sqlite``.

Example (needs an exported folder):
    >>> make_bundle("exported/", "bundle/", gallery="faces/")  # doctest: +SKIP
    PosixPath('bundle')
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tripletlab.deploy.files import read_json, write_json_atomic
from tripletlab.errors import ConfigError, DataError

__all__ = ["BUNDLE_FILES", "make_bundle"]

BUNDLE_FILES = ("preprocess.json", "metadata.json")
#: Image files the gallery folder is read for (as the training image-folder loader).
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


def make_bundle(
    source: str | Path,
    out_dir: str | Path,
    *,
    gallery: str | Path | None = None,
    verification_threshold: float | None = None,
    identification_threshold: float | None = None,
) -> Path:
    """Write a bundle to ``out_dir`` from ``source`` (an exported folder or a run directory).

    Args:
        source: a folder written by ``export_run(..., format="onnx")``, or a run directory
            (exported to ONNX first; needs torch).
        out_dir: the bundle folder (created; an existing gallery there is kept and added to).
        gallery: an image folder ``<identity>/<images>`` to enrol.
        verification_threshold, identification_threshold: override the run's thresholds.

    Returns:
        ``out_dir`` as a Path.
    """
    source, out = Path(source), Path(out_dir)
    if not (source / "metadata.json").is_file():
        if not (source / "checkpoints").is_dir():
            raise ConfigError(f"{source} is neither an exported folder nor a run directory")
        from tripletlab.deploy.export import export_run

        source = export_run(source, "onnx", out)
    meta = read_json(source / "metadata.json")
    if meta.get("model_format") != "onnx":
        raise ConfigError(
            f"a bundle holds an ONNX model; {source} holds {meta.get('model_format')}"
        )
    out.mkdir(parents=True, exist_ok=True)
    if source.resolve() != out.resolve():
        for name in (*BUNDLE_FILES, meta["model_file"]):
            shutil.copy2(source / name, out / name)
    thresholds = dict(meta.get("thresholds") or {})
    if verification_threshold is not None:
        thresholds["verification"] = float(verification_threshold)
    if identification_threshold is not None:
        thresholds["identification"] = float(identification_threshold)
    write_json_atomic(out / "thresholds.json", thresholds)
    if gallery is not None:
        enrol_folder(out, gallery)
    return out


def enrol_folder(bundle: str | Path, folder: str | Path) -> dict[str, int]:
    """Enrol every ``folder/<identity>/<image>`` into the bundle's gallery; returns the number
    of images per identity."""
    from tripletlab.deploy.recognizer import Recognizer

    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"gallery folder not found: {root}")
    counts: dict[str, int] = {}
    recognizer = Recognizer.open(bundle)
    try:
        for person in sorted(
            p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
        ):
            files = sorted(
                f for f in person.rglob("*") if f.is_file() and f.suffix.lower() in _IMAGE_SUFFIXES
            )
            if files:
                recognizer.enrol(person.name, files, refs=[str(f.relative_to(root)) for f in files])
                counts[person.name] = len(files)
    finally:
        recognizer.close()
    if not counts:
        raise DataError(f"{root} has no <identity>/<image> files to enrol")
    return counts
