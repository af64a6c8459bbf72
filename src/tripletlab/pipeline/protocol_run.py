"""The ``evaluate`` verb with a dataset's own protocol: :func:`evaluate_protocol`.

The sets come from a field layout (``market1501:PATH``, ``cub200:PATH``, ``lfw:PATH``, a
manifest CSV… — by default the run's own ``--dataset``) or from ``--query`` / ``--gallery``
(layout specs, manifests, image folders with one sub-folder per identity, or ``.npz`` files
with ``x``/``features`` and ``labels``, optional ``cameras``). With cameras on both sides the
re-id protocol applies, else query ≠ gallery retrieval. Results hold every metric per variant
(``plain``, ``re-ranked``, ``aqe`` / ``alpha-qe``); with ``report_dir`` the protocol report
(tables, CMC curves, retrieval grid, worst classes; ``report.md`` + ``report.html``) is
written there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tripletlab.data.layouts import Layout, LayoutSplit
from tripletlab.errors import ConfigError, DataError
from tripletlab.pipeline.identification import folder_split
from tripletlab.pipeline.layouts import embed_split, is_layout_dataset, load_run_layout
from tripletlab.pipeline.protocols import EvalSet, PostProcessing, protocol_variants
from tripletlab.pipeline.trained import TrainedModel

__all__ = ["evaluate_protocol", "read_eval_set"]

#: FARs of the verification (TAR@FAR) and open-set identification (DIR@FAR) tables.
VERIFICATION_FARS = (1e-3, 1e-2)
IDENTIFICATION_FARS = (0.01, 0.1)


def _embedded(trained: TrainedModel, split: LayoutSplit) -> EvalSet:
    return EvalSet(
        embed_split(trained.embed, split, trained.in_shape),
        split.labels,
        split.cameras,
        [str(p) for p in split.paths],
        list(split.paths),
        dict(split.class_names),
    )


def _npz_set(trained: TrainedModel, path: Path) -> EvalSet:
    with np.load(path, allow_pickle=False) as data:
        key = next((k for k in ("x", "features", "samples") if k in data), None)
        if key is None or "labels" not in data:
            raise DataError(f"{path}: an evaluation .npz needs 'x' (or 'features') and 'labels'")
        samples, labels = data[key], data["labels"].astype(np.int64)
        cameras = data["cameras"].astype(np.int64) if "cameras" in data else None
    ids = [f"{path}#{i}" for i in range(len(labels))]
    return EvalSet(trained.embed(samples), labels, cameras, ids)


def read_eval_set(trained: TrainedModel, spec: str, role: str) -> EvalSet:
    """The ``role`` (``"query"`` / ``"gallery"``) set named by ``spec``, embedded by the run."""
    if is_layout_dataset(spec):
        layout = load_run_layout(spec)
        return _embedded(trained, layout.split(role if role in layout.splits else "test"))
    path = Path(spec).expanduser()
    if path.is_dir():
        return _embedded(trained, folder_split(path))
    if path.suffix.lower() == ".npz" and path.is_file():
        return _npz_set(trained, path)
    raise DataError(
        f"{spec}: --{role} takes a layout spec (market1501:PATH…), a manifest CSV, an image "
        "folder (one sub-folder per identity) or a .npz with labels"
    )


def _layout_sets(trained: TrainedModel, layout: Layout) -> tuple[str, EvalSet, EvalSet]:
    if layout.protocol in ("reid", "query_gallery"):
        query = _embedded(trained, layout.split("query"))
        return layout.protocol, query, _embedded(trained, layout.split("gallery"))
    test = _embedded(trained, layout.split("test"))
    return layout.protocol, test, test


def _verification(trained: TrainedModel, layout: Layout, test: EvalSet) -> dict[str, Any]:
    from tripletlab.evaluate.face_verification import pair_distances, ten_fold_verification

    pairs = layout.pairs
    if pairs is None:
        raise DataError(f"layout {layout.name!r} has no verification pairs")
    d = pair_distances(test.embeddings, pairs.first, pairs.second, trained.metric)
    return ten_fold_verification(d, pairs.same, pairs.folds, fars=VERIFICATION_FARS)


def _identification(trained: TrainedModel, query: EvalSet, gallery: EvalSet) -> dict | None:
    """Open-set DIR@FAR when some query identity is enrolled in a separate gallery."""
    from tripletlab.evaluate.open_set import open_set_identification

    if not np.isin(query.labels, gallery.labels).any() or len(np.unique(gallery.labels)) < 2:
        return None
    return open_set_identification(
        query.embeddings,
        query.labels,
        gallery.embeddings,
        gallery.labels,
        fars=IDENTIFICATION_FARS,
        metric=trained.metric,
    )


def evaluate_protocol(
    run_dir: str | Path,
    *,
    dataset: str | None = None,
    query: str | None = None,
    gallery: str | None = None,
    options: PostProcessing | None = None,
    report_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate a run by a protocol; see the module docstring.

    Returns:
        ``{"dataset", "protocol", "n_query", "n_gallery", "variants": {variant: metrics}}``
        plus ``"verification"`` (LFW), ``"identification"`` (open set) and ``"report"``
        (the Markdown path) when present.
    """
    options = options or PostProcessing()
    trained = TrainedModel.load(run_dir)
    if (query is None) != (gallery is None):
        raise ConfigError("give both --query and --gallery, or neither")
    layout = None
    if query is not None and gallery is not None:
        q, g = read_eval_set(trained, query, "query"), read_eval_set(trained, gallery, "gallery")
        with_cameras = q.cameras is not None and g.cameras is not None
        protocol, name = ("reid" if with_cameras else "query_gallery"), f"{query} vs {gallery}"
    else:
        name = dataset or trained.cfg.data.dataset
        if not is_layout_dataset(name):
            raise ConfigError(f"{name!r} is not a dataset layout (market1501:PATH, …, a manifest)")
        layout = load_run_layout(name)
        protocol, q, g = _layout_sets(trained, layout)
    out: dict[str, Any] = {
        "dataset": name,
        "protocol": protocol,
        "n_query": len(q.labels),
        "n_gallery": len(g.labels),
    }
    if protocol == "verification":
        if options.asked:
            raise ConfigError("re-ranking and query expansion apply to ranking protocols, not LFW")
        assert layout is not None
        out["verification"] = _verification(trained, layout, q)
    else:
        ks = _recall_ks(layout)
        out["variants"] = protocol_variants(protocol, q, g, options, trained.metric, ks)
        if protocol != "self":
            out["identification"] = _identification(trained, q, g)
    if report_dir is not None:
        from tripletlab.pipeline.protocol_report import write_run_protocol_report

        out["report"] = str(write_run_protocol_report(report_dir, out, q, g, trained.metric))
    return out


def _recall_ks(layout: Layout | None) -> tuple[int, ...]:
    from tripletlab.evaluate.dml_protocol import DEFAULT_KS, RECALL_KS

    return tuple(RECALL_KS.get(layout.name, DEFAULT_KS)) if layout else DEFAULT_KS
