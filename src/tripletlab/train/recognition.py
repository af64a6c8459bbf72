"""Recognition with a trained run: build a gallery index, identify queries, verify pairs.

Behind ``tripletlab index``, ``tripletlab search`` and ``tripletlab verify``:

* :func:`index_run` — embed a labelled gallery (any dataset :func:`~tripletlab.data.load_dataset`
  reads: an image folder with one sub-folder per identity, ``.npz``, ``.csv``…) with the run's
  model and save a :class:`~tripletlab.evaluate.gallery.GalleryIndex` holding the embeddings,
  labels, sample ids, the run's metric and its verification threshold, and where it came from
  (run directory, SHA-256 of the checkpoint);
* :func:`search_index` — embed query files with the *same* model (the index remembers the run;
  a changed checkpoint is refused, since its embeddings would not match) and return the
  nearest identities with distances;
* :func:`verify_run` — embed two inputs and decide "same identity" at the threshold chosen in
  evaluation (``test.verification_threshold`` of the run's ``metrics.json``: the threshold of
  best accuracy on the test split's verification pairs).

Inputs to embed: a ``.npy`` array of samples, an image file, an image folder or a dataset file.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tripletlab.errors import ConfigError, DataError
from tripletlab.evaluate.gallery import GalleryIndex, verify_pairs

__all__ = ["BACKENDS", "index_run", "make_backend", "read_samples", "search_index", "verify_run"]

#: kNN backends by name: exact torch (default) or faiss (``pip install tripletlab[faiss]``).
BACKENDS: tuple[str, ...] = ("torch", "faiss-flat", "faiss-ivf", "faiss-hnsw")

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm"}


def make_backend(name: str) -> Any:
    """The kNN backend called ``name`` (one of :data:`BACKENDS`)."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {name!r}")
    if name == "torch":
        from tripletlab.evaluate.knn import TorchKNN

        return TorchKNN()
    from tripletlab.evaluate.knn_faiss import FaissKNN

    return FaissKNN(name.removeprefix("faiss-"))


def _checkpoint_path(run_dir: Path) -> Path:
    for name in ("final.pt", "last.pt"):
        path = run_dir / "checkpoints" / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"no checkpoint in {run_dir / 'checkpoints'} (is it a run?)")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _run_metric(run_dir: Path) -> str:
    from tripletlab.train.run import load_run

    _, meta = load_run(run_dir)
    return str(meta["run"]["loss"]["metric"])


def run_threshold(run_dir: str | Path) -> float | None:
    """The verification threshold chosen in the run's evaluation (None if not recorded)."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())["test"]["verification_threshold"]
    except (KeyError, TypeError, ValueError):
        return None
    return None if value is None else float(value)


def read_samples(path: str | Path, in_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Samples (N, …) from a ``.npy`` array, one image file, or any dataset the loader reads.

    A single image is converted to the run's channels and size (``in_shape`` = (C, H, W)) and
    scaled to [0, 1], as the image-folder loader does.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such input: {path}")
    if path.is_file() and path.suffix.lower() in _IMAGE_SUFFIXES:
        from PIL import Image, UnidentifiedImageError

        try:
            image = Image.open(path)
            image.load()
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(f"{path}: cannot read the image ({exc})") from None
        converted: Image.Image = image
        if in_shape is not None and len(in_shape) == 3:
            mode = "L" if in_shape[0] == 1 else "RGB"
            size = (in_shape[2], in_shape[1])
            converted = image.convert(mode).resize(size, Image.Resampling.BILINEAR)
        array = np.asarray(converted, dtype=np.float32) / 255.0
        array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
        return array[None]
    from tripletlab.train.run import read_input

    samples = read_input(path)
    shape = None if in_shape is None else tuple(in_shape)
    if shape is not None and samples.size == int(np.prod(shape)) and samples.shape[1:] != shape:
        samples = samples.reshape(1, *shape)  # one sample saved without its batch axis
    return samples


def _embed(run_dir: Path, paths: list[str | Path]) -> list[torch.Tensor]:
    """Embeddings of the samples of each file, one model load and one pass for all."""
    from tripletlab.train.run import embed_run, load_run

    _, meta = load_run(run_dir)
    in_shape = tuple(meta["in_shape"])
    samples = [read_samples(path, in_shape).astype(np.float32, copy=False) for path in paths]
    flat = [s.reshape(len(s), -1) for s in samples]
    widths = {f.shape[1] for f in flat}
    if len(widths) > 1:
        raise DataError(f"the inputs hold samples of different sizes: {sorted(widths)}")
    embedded = torch.from_numpy(np.ascontiguousarray(embed_run(run_dir, np.concatenate(flat))))
    return list(torch.split(embedded, [len(s) for s in samples]))


def index_run(
    run_dir: str | Path,
    data: str | Path,
    output: str | Path,
    *,
    data_dir: str | Path | None = None,
) -> GalleryIndex:
    """Embed the labelled gallery ``data`` with the run's model and save the index to ``output``.

    Returns the saved :class:`GalleryIndex`. Ids are ``"<dataset name>:<row>"``.
    """
    from tripletlab.data import load_dataset
    from tripletlab.train.run import embed_run

    run_dir = Path(run_dir)
    checkpoint = _checkpoint_path(run_dir)
    dataset = load_dataset(str(data), data_dir)
    embeddings = torch.from_numpy(embed_run(run_dir, dataset.features.numpy()))
    index = GalleryIndex(
        embeddings,
        dataset.labels,
        ids=[f"{dataset.name}:{i}" for i in range(len(dataset.labels))],
        metric=_run_metric(run_dir),
        threshold=run_threshold(run_dir),
        class_names=list(dataset.class_names),
        info={
            "run_dir": str(run_dir.resolve()),
            "checkpoint": str(checkpoint.resolve()),
            "checkpoint_sha256": _sha256(checkpoint),
            "data": str(data),
            "data_source": dataset.source,
            "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        },
    )
    index.save(output)
    return index


def search_index(
    index_path: str | Path,
    queries: list[str | Path],
    top_k: int = 5,
    *,
    backend: Any = None,
) -> list[dict[str, Any]]:
    """Identify every sample of every query file: its ``top_k`` nearest identities.

    Returns one dict per query sample: ``{"query", "matches": [{"rank", "identity",
    "label", "distance", "id", "same"}]}``; ``same`` says whether the distance is within the
    index's verification threshold (None when the index has none).
    """
    if isinstance(backend, str):
        backend = make_backend(backend)
    index = GalleryIndex.load(index_path)
    run_dir = index.info.get("run_dir")
    if not run_dir:
        raise DataError(f"{index_path}: the index does not name the run that made it")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"the index's run directory {run_dir} does not exist anymore")
    expected = index.info.get("checkpoint_sha256")
    if expected and _sha256(_checkpoint_path(run_dir)) != expected:
        raise DataError(
            f"the checkpoint of {run_dir} changed since {index_path} was built; its embeddings "
            "would not match — rebuild the index with `tripletlab index`"
        )
    ids = index.ids or []
    results = []
    for path, embeddings in zip(queries, _embed(run_dir, list(queries)), strict=True):
        found = index.search(embeddings, top_k, backend=backend)
        for row in range(len(embeddings)):
            name = str(path) if len(embeddings) == 1 else f"{path}#{row}"
            matches = []
            for rank in range(top_k):
                g = int(found.indices[row, rank])
                if g < 0:
                    break
                distance = float(found.distances[row, rank])
                label = int(found.labels[row, rank])
                matches.append(
                    {
                        "rank": rank + 1,
                        "identity": index.name_of(label),
                        "label": label,
                        "distance": distance,
                        "id": ids[g],
                        "same": None if index.threshold is None else distance <= index.threshold,
                    }
                )
            results.append({"query": name, "matches": matches})
    return results


def verify_run(
    run_dir: str | Path, a: str | Path, b: str | Path, *, threshold: float | None = None
) -> list[dict[str, Any]]:
    """Same identity or not, for the samples of ``a`` and ``b`` (pairwise by row; one sample
    against many broadcasts), at the run's verification threshold (or ``threshold``).

    Returns one dict per pair: ``{"pair", "distance", "threshold", "same"}``.
    """
    run_dir = Path(run_dir)
    if threshold is None:
        threshold = run_threshold(run_dir)
    if threshold is None:
        raise ConfigError(
            f"{run_dir}/metrics.json has no test.verification_threshold (the run was not "
            "evaluated to the end); pass --threshold"
        )
    ea, eb = _embed(run_dir, [a, b])
    distances, same = verify_pairs(ea, eb, threshold, metric=_run_metric(run_dir))
    return [
        {"pair": i, "distance": float(d), "threshold": float(threshold), "same": bool(s)}
        for i, (d, s) in enumerate(zip(distances.tolist(), same.tolist(), strict=True))
    ]
