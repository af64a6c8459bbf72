"""Recognition with a trained run — the ``index``, ``search`` and ``verify`` verbs.

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
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tripletlab.data import load_dataset
from tripletlab.errors import ConfigError, DataError
from tripletlab.evaluate.gallery import GalleryIndex, verify_pairs
from tripletlab.evaluate.knn import KNNBackend
from tripletlab.pipeline.data import read_samples
from tripletlab.pipeline.factories import build_backend
from tripletlab.pipeline.registries import BACKEND_NAMES
from tripletlab.pipeline.run_dir import RunDir
from tripletlab.pipeline.trained import TrainedModel

__all__ = ["BACKENDS", "index_run", "make_backend", "run_threshold", "search_index", "verify_run"]

#: kNN backends by name (kept for code importing it from here; see the registries).
BACKENDS = BACKEND_NAMES
#: Old name of :func:`~tripletlab.pipeline.factories.build_backend`.
make_backend = build_backend


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_threshold(run_dir: str | Path) -> float | None:
    """The verification threshold chosen in the run's evaluation (None if not recorded)."""
    return RunDir(run_dir).verification_threshold()


def _embed_files(trained: TrainedModel, paths: list[str | Path]) -> list[Tensor]:
    """Embeddings of the samples of each file, one pass for all."""
    samples = [read_samples(p, trained.in_shape).astype(np.float32, copy=False) for p in paths]
    for path, found in zip(paths, samples, strict=True):
        if found.ndim == 0 or len(found) == 0 or found.size == 0:
            raise DataError(f"{path}: holds no samples to embed")
    flat = [s.reshape(len(s), -1) for s in samples]
    widths = {f.shape[1] for f in flat}
    if len(widths) > 1:
        raise DataError(f"the inputs hold samples of different sizes: {sorted(widths)}")
    embedded = trained.embed(np.concatenate(flat))
    return list(torch.split(embedded, [len(s) for s in samples]))


def index_run(
    run_dir: str | Path,
    data: str | Path,
    output: str | Path,
    *,
    data_dir: str | Path | None = None,
) -> GalleryIndex:
    """The ``index`` verb: embed the labelled gallery ``data`` with the run's model and save
    the index to ``output``. Returns the saved :class:`GalleryIndex`; ids are
    ``"<dataset name>:<row>"``."""
    run = RunDir(run_dir)
    trained = TrainedModel.load(run.path)
    dataset = load_dataset(str(data), data_dir)
    index = GalleryIndex(
        trained.embed(dataset.features.numpy()),
        dataset.labels,
        ids=[f"{dataset.name}:{i}" for i in range(len(dataset.labels))],
        metric=trained.metric,
        threshold=run.verification_threshold(),
        class_names=list(dataset.class_names),
        info={
            "run_dir": str(run.path.resolve()),
            "checkpoint": str(trained.checkpoint.resolve()),
            "checkpoint_sha256": _sha256(trained.checkpoint),
            "data": str(data),
            "data_source": dataset.source,
            "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        },
    )
    index.save(output)
    return index


def _index_run(index: GalleryIndex, index_path: str | Path) -> RunDir:
    """The run that built ``index``, refused when gone or retrained since."""
    named = index.info.get("run_dir")
    if not named:
        raise DataError(f"{index_path}: the index does not name the run that made it")
    run = RunDir(named)
    if not run.path.is_dir():
        raise FileNotFoundError(f"the index's run directory {run.path} does not exist anymore")
    expected = index.info.get("checkpoint_sha256")
    if expected and _sha256(run.trained_checkpoint()) != expected:
        raise DataError(
            f"the checkpoint of {run.path} changed since {index_path} was built; its embeddings "
            "would not match — rebuild the index with `tripletlab index`"
        )
    return run


def _matches(index: GalleryIndex, found: Any, row: int, top_k: int) -> list[dict[str, Any]]:
    ids = index.ids or []
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
    return matches


def search_index(
    index_path: str | Path,
    queries: list[str | Path],
    top_k: int = 5,
    *,
    backend: str | KNNBackend | None = None,
) -> list[dict[str, Any]]:
    """The ``search`` verb: identify every sample of every query file — its ``top_k``
    nearest identities.

    Returns one dict per query sample: ``{"query", "matches": [{"rank", "identity",
    "label", "distance", "id", "same"}]}``; ``same`` says whether the distance is within the
    index's verification threshold (None when the index has none).
    """
    knn = build_backend(backend) if isinstance(backend, str) else backend
    index = GalleryIndex.load(index_path)
    trained = TrainedModel.load(_index_run(index, index_path).path)
    results = []
    for path, embeddings in zip(queries, _embed_files(trained, list(queries)), strict=True):
        found = index.search(embeddings, top_k, backend=knn)
        for row in range(len(embeddings)):
            name = str(path) if len(embeddings) == 1 else f"{path}#{row}"
            results.append({"query": name, "matches": _matches(index, found, row, top_k)})
    return results


def verify_run(
    run_dir: str | Path, a: str | Path, b: str | Path, *, threshold: float | None = None
) -> list[dict[str, Any]]:
    """The ``verify`` verb: same identity or not, for the samples of ``a`` and ``b`` (pairwise
    by row; one sample against many broadcasts), at the run's verification threshold (or
    ``threshold``).

    Returns one dict per pair: ``{"pair", "distance", "threshold", "same"}``.
    """
    run = RunDir(run_dir)
    if threshold is None:
        threshold = run.verification_threshold()
    if threshold is None:
        raise ConfigError(
            f"{run.metrics_path} has no test.verification_threshold (the run was not "
            "evaluated to the end); pass --threshold"
        )
    trained = TrainedModel.load(run.path)
    ea, eb = _embed_files(trained, [a, b])
    distances, same = verify_pairs(ea, eb, threshold, metric=trained.metric)
    return [
        {"pair": i, "distance": float(d), "threshold": float(threshold), "same": bool(s)}
        for i, (d, s) in enumerate(zip(distances.tolist(), same.tolist(), strict=True))
    ]
