"""Files in, traceable rows out; thresholds chosen at a false accept rate.

* :func:`read_files` — samples of an image file, a folder of images (flat or nested), a
  ``.npy`` / ``.npz`` array or a dataset file, with one id per row: the image's path, or
  ``FILE#ROW`` for arrays.
* :func:`gallery_split` — a labelled gallery that keeps its file paths: a field layout's
  gallery (``market1501:PATH``, a manifest CSV…) or an image folder with one sub-folder per
  identity.
* :func:`identification_choice` — the ``search`` threshold: at ``target_far`` of impostor
  comparisons, each gallery item against the nearest item of another identity.
* :func:`embed_inputs` — the ``embed`` verb over those inputs, with a ``.ids.txt`` of rows.
* :func:`impostor_distances` / :func:`verification_far` — the FAR of ``verify``'s pair
  threshold on the run's test impostor pairs.

Example:
    >>> import numpy as np, torch
    >>> g = torch.tensor([[0.0], [0.1], [5.0], [5.2]])
    >>> identification_choice(g, np.array([0, 0, 1, 1]), 0.0, "euclidean")["achieved_far"]
    0.0
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tripletlab.atomic import atomic_write, atomic_write_text
from tripletlab.data.layouts import LayoutSplit
from tripletlab.errors import DataError
from tripletlab.pipeline.data import IMAGE_SUFFIXES, read_samples
from tripletlab.pipeline.layouts import is_layout_dataset, load_run_layout

__all__ = [
    "embed_inputs",
    "folder_split",
    "gallery_split",
    "identification_choice",
    "ids_path_of",
    "impostor_distances",
    "read_files",
    "verification_far",
]

#: Impostor pairs drawn from the run's test embeddings to measure a threshold's FAR: enough
#: for a FAR of 1e-4 to be resolved by ten pairs, at 100k distances (800 kB).
MAX_IMPOSTOR_PAIRS = 100_000


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def read_files(path: str | Path, in_shape: tuple[int, ...] | None) -> tuple[np.ndarray, list[str]]:
    """(samples (N, …), N ids) of one input; see the module docstring."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such input: {path}")
    if path.is_dir():
        files = _image_files(path)
        if not files:
            raise DataError(
                f"{path}: the folder holds no image ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        return np.concatenate([read_samples(f, in_shape) for f in files]), [str(f) for f in files]
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return read_samples(path, in_shape), [str(path)]
    samples = read_samples(path, in_shape)
    if len(samples) == 1:
        return samples, [str(path)]
    return samples, [f"{path}#{i}" for i in range(len(samples))]


def folder_split(folder: Path) -> LayoutSplit:
    """An image folder with one sub-folder per identity, as a split (paths kept)."""
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    paths, labels = [], []
    for label, class_dir in enumerate(classes):
        files = _image_files(class_dir)
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise DataError(f"{folder}: no image in one sub-folder per identity")
    names = {i: c.name for i, c in enumerate(classes)}
    return LayoutSplit(paths, np.array(labels, dtype=np.int64), class_names=names)


def gallery_split(data: str) -> LayoutSplit | None:
    """The gallery of ``data`` with its file paths, or None when ``data`` is no layout or
    image folder (an array file: rows are then traced as ``FILE#ROW``)."""
    if is_layout_dataset(data):
        layout = load_run_layout(data)
        for name in ("gallery", "test", "train"):
            if name in layout.splits:
                return layout.splits[name]
    path = Path(data).expanduser()
    if path.is_dir() and any(p.is_dir() for p in path.iterdir()):
        return folder_split(path)
    return None


def identification_choice(
    embeddings: Tensor, labels: np.ndarray, target_far: float, metric: str
) -> dict[str, Any]:
    """The identification threshold at ``target_far`` (see the module docstring), as the
    JSON-able dict stored in the index: ``threshold``, ``target_far``, ``achieved_far``,
    ``n_impostors``."""
    from tripletlab.evaluate.open_set import identification_threshold

    choice = identification_threshold(embeddings, np.asarray(labels), target_far, metric=metric)
    return {
        "threshold": float(choice.threshold),
        "target_far": float(choice.target_far),
        "achieved_far": float(choice.achieved_far),
        "n_impostors": int(choice.n_impostors),
    }


def impostor_distances(
    embeddings: Tensor, labels: np.ndarray, metric: str, seed: int = 0
) -> np.ndarray:
    """Distances of impostor pairs (different labels) of ``embeddings``: all of them, or a
    seeded sample of :data:`MAX_IMPOSTOR_PAIRS`."""
    from tripletlab.evaluate.face_verification import pair_distances

    labels = np.asarray(labels)
    n = len(labels)
    first, second = (
        np.triu_indices(n, k=1)
        if n * (n - 1) // 2 <= MAX_IMPOSTOR_PAIRS
        else (np.random.default_rng(seed).integers(0, n, size=(2, MAX_IMPOSTOR_PAIRS)))
    )
    keep = labels[first] != labels[second]
    if not keep.any():
        raise DataError("no impostor pair: the embeddings hold a single identity")
    return pair_distances(embeddings, first[keep], second[keep], metric)


def verification_far(test_embeddings: Path, threshold: float, metric: str) -> dict[str, Any]:
    """The FAR of ``threshold`` on the run's test impostor pairs (``test_embeddings.npz``)."""
    from tripletlab.evaluate.thresholds import accept_rate

    with np.load(test_embeddings, allow_pickle=False) as data:
        embeddings, labels = torch.from_numpy(data["embeddings"]), data["labels"]
    impostors = impostor_distances(embeddings, labels, metric)
    return {"far": accept_rate(impostors, threshold), "n_impostors": len(impostors)}


def ids_path_of(output: str | Path) -> Path:
    """Where :func:`embed_inputs` writes the row ids of ``output``: ``NAME.ids.txt``."""
    output = Path(output)
    return output.with_name(output.stem + ".ids.txt")


def embed_inputs(
    run_dir: str | Path, input_path: str | Path, output: str | Path
) -> tuple[int, int]:
    """The ``embed`` verb on any input of :func:`read_files`: embeddings (N, D) float32 to
    exactly ``output`` (.npy format whatever the suffix) and their row ids, one a line, to :func:`ids_path_of` ``(output)``.

    Returns (N, D).
    """
    from tripletlab.pipeline.trained import TrainedModel

    trained = TrainedModel.load(run_dir)
    samples, ids = read_files(input_path, trained.in_shape)
    embeddings = trained.embed(samples).numpy().astype(np.float32)
    output = Path(output)
    # Exactly the path given (np.save on a path would append .npy), written atomically.
    atomic_write(output, lambda handle: np.save(handle, embeddings))
    atomic_write_text(ids_path_of(output), "".join(f"{i}\n" for i in ids))
    return embeddings.shape[0], embeddings.shape[1]
