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
from tripletlab.pipeline.factories import build_backend
from tripletlab.pipeline.identification import (
    gallery_split,
    identification_choice,
    read_files,
    verification_far,
)
from tripletlab.pipeline.registries import BACKEND_NAMES
from tripletlab.pipeline.run_dir import RunDir
from tripletlab.pipeline.trained import TrainedModel

__all__ = ["BACKENDS", "index_run", "make_backend", "run_threshold", "search_index", "verify_run"]

#: What ``search`` answers for a probe beyond the identification threshold.
UNKNOWN_IDENTITY = "unknown"
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


def _embed_samples(trained: TrainedModel, arrays: list[np.ndarray]) -> list[Tensor]:
    """Embeddings of each array of samples, one pass for all."""
    samples = [a.astype(np.float32, copy=False) for a in arrays]
    flat = [s.reshape(len(s), -1) for s in samples]
    widths = {f.shape[1] for f in flat}
    if len(widths) > 1:
        raise DataError(f"the inputs hold samples of different sizes: {sorted(widths)}")
    embedded = trained.embed(np.concatenate(flat))
    return list(torch.split(embedded, [len(s) for s in samples]))


def _embed_inputs(trained: TrainedModel, paths: list[str | Path]) -> list[tuple[Tensor, list[str]]]:
    """(embeddings, one id per row: the file, or ``FILE#ROW``) of each input, one pass."""
    read = [read_files(p, trained.in_shape) for p in paths]
    for path, (found, _) in zip(paths, read, strict=True):
        if found.ndim == 0 or len(found) == 0 or found.size == 0:
            raise DataError(f"{path}: holds no samples to embed")
    embedded = _embed_samples(trained, [samples for samples, _ in read])
    return [(e, ids) for e, (_, ids) in zip(embedded, read, strict=True)]


def _labelled_gallery(
    trained: TrainedModel, data: str, data_dir: str | Path | None
) -> tuple[Tensor, Tensor, list[str], list[str], str]:
    """(embeddings, labels, ids, class names, source): file paths as ids where the gallery
    keeps them (a layout, a manifest, an image folder), else ``"<name>:<row>"``."""
    split = None if data_dir is not None else gallery_split(data)
    if split is not None:
        from tripletlab.pipeline.layouts import embed_split

        classes, labels = np.unique(split.labels, return_inverse=True)
        names = [split.class_names.get(int(c), str(int(c))) for c in classes]
        embeddings = embed_split(trained.embed, split, trained.in_shape)
        ids = [str(p) for p in split.paths]
        return embeddings, torch.from_numpy(labels.astype(np.int64)), ids, names, str(data)
    dataset = load_dataset(data, data_dir)
    ids = [f"{dataset.name}:{i}" for i in range(len(dataset.labels))]
    embeddings = trained.embed(dataset.features.numpy())
    return embeddings, dataset.labels, ids, list(dataset.class_names), dataset.source


def index_run(
    run_dir: str | Path,
    data: str | Path,
    output: str | Path,
    *,
    data_dir: str | Path | None = None,
    target_far: float | None = None,
) -> GalleryIndex:
    """The ``index`` verb: embed the labelled gallery ``data`` with the run's model and save
    the index to ``output``. Returns the saved :class:`GalleryIndex`; ids are the files'
    paths (layouts, manifests, image folders), else ``"<dataset name>:<row>"``.

    ``target_far``: also choose the identification threshold at this false accept rate on
    the gallery's impostor comparisons (stored in ``info["identification"]``), beyond which
    ``search`` answers ``unknown``.
    """
    run = RunDir(run_dir)
    trained = TrainedModel.load(run.path)
    embeddings, labels, ids, names, source = _labelled_gallery(trained, str(data), data_dir)
    info: dict[str, Any] = {
        "run_dir": str(run.path.resolve()),
        "checkpoint": str(trained.checkpoint.resolve()),
        "checkpoint_sha256": _sha256(trained.checkpoint),
        "data": str(data),
        "data_source": source,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }
    if target_far is not None:
        info["identification"] = identification_choice(
            embeddings, labels.numpy(), target_far, trained.metric
        )
    index = GalleryIndex(
        embeddings,
        labels,
        ids=ids,
        metric=trained.metric,
        threshold=run.verification_threshold(),
        class_names=names,
        info=info,
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
    chosen = index.info.get("identification")
    results = []
    for embeddings, ids in _embed_inputs(trained, list(queries)):
        found = index.search(embeddings, top_k, backend=knn)
        for row, name in enumerate(ids):
            matches = _matches(index, found, row, top_k)
            result: dict[str, Any] = {"query": name, "matches": matches}
            if chosen is not None:
                result.update(_identity(index, matches, chosen))
            results.append(result)
    return results


def _identity(
    index: GalleryIndex, matches: list[dict[str, Any]], chosen: dict[str, Any]
) -> dict[str, Any]:
    """The answer at the index's identification threshold: the best identity, or
    ``unknown`` beyond it, with the FAR the threshold was chosen at."""
    best = matches[0] if matches else None
    known = best is not None and best["distance"] <= chosen["threshold"]
    return {
        "identity": best["identity"] if known and best else UNKNOWN_IDENTITY,
        "known": known,
        "identification_threshold": chosen["threshold"],
        "target_far": chosen["target_far"],
        "achieved_far": chosen["achieved_far"],
    }


def _threshold_far(
    run: RunDir, metric: str, threshold: float | None, target_far: float | None
) -> dict[str, Any]:
    """The pair threshold and the FAR it was set at on the run's test impostor pairs:
    ``--target-far`` chooses it there, else ``--threshold`` or the run's own is measured."""
    if threshold is not None and target_far is not None:
        raise ConfigError("give --threshold or --target-far, not both")
    source = "given" if threshold is not None else "evaluation"
    threshold = threshold if threshold is not None else run.verification_threshold()
    test = run.test_embeddings_path
    if target_far is not None:
        from tripletlab.evaluate.thresholds import threshold_at_far
        from tripletlab.pipeline.identification import impostor_distances

        if not test.is_file():
            raise DataError(f"{test} is missing: --target-far needs the run's test embeddings")
        with np.load(test, allow_pickle=False) as data:
            embeddings, labels = torch.from_numpy(data["embeddings"]), data["labels"]
        choice = threshold_at_far(impostor_distances(embeddings, labels, metric), target_far)
        return {"threshold": choice.threshold, "far": choice.achieved_far, "source": "target_far"}
    if threshold is None:
        raise ConfigError(
            f"{run.metrics_path} has no test.verification_threshold (the run was not "
            "evaluated to the end); pass --threshold or --target-far"
        )
    far = verification_far(test, threshold, metric)["far"] if test.is_file() else None
    return {"threshold": float(threshold), "far": far, "source": source}


def verify_run(
    run_dir: str | Path,
    a: str | Path,
    b: str | Path,
    *,
    threshold: float | None = None,
    target_far: float | None = None,
) -> list[dict[str, Any]]:
    """The ``verify`` verb: same identity or not, for the samples of ``a`` and ``b`` (pairwise
    by row; one sample against many broadcasts), at the run's verification threshold, at
    ``threshold``, or at the threshold of ``target_far`` on the run's test impostor pairs.

    Returns one dict per pair: ``{"pair", "a", "b", "distance", "threshold", "far",
    "threshold_source", "same"}``; ``a``/``b`` name each row's file, ``far`` is the false
    accept rate of the threshold on the run's test impostor pairs (None without them).
    """
    run = RunDir(run_dir)
    trained = TrainedModel.load(run.path)
    chosen = _threshold_far(run, trained.metric, threshold, target_far)
    (ea, ids_a), (eb, ids_b) = _embed_inputs(trained, [a, b])
    distances, same = verify_pairs(ea, eb, chosen["threshold"], metric=trained.metric)
    n = len(distances)
    names_a = ids_a * n if len(ids_a) == 1 else ids_a
    names_b = ids_b * n if len(ids_b) == 1 else ids_b
    return [
        {
            "pair": i,
            "a": names_a[i],
            "b": names_b[i],
            "distance": float(d),
            "threshold": float(chosen["threshold"]),
            "far": chosen["far"],
            "threshold_source": chosen["source"],
            "same": bool(s),
        }
        for i, (d, s) in enumerate(zip(distances.tolist(), same.tolist(), strict=True))
    ]
