"""Glue between the run pipeline and the data / loss / evaluation modules.

Each function calls the library's own implementation; the small fallbacks below are used only
when that module is not importable yet (the parts are developed in parallel).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from tripletlab.errors import ConfigError, DataError


@dataclass
class ArrayData:
    """A dataset as arrays: ``x`` (N, ...) float32, ``y`` (N,) int64, and class names."""

    x: np.ndarray
    y: np.ndarray
    class_names: list[str]
    name: str


def load_data(dataset: str, data_dir: str | None, label_column: str | None) -> ArrayData:
    """Load a built-in dataset or the user's own data as arrays."""
    try:
        from tripletlab.data import load_dataset
    except ImportError:
        load_dataset = None
    if load_dataset is None:
        if dataset != "digits":
            raise DataError(f"dataset {dataset!r} is not available yet")
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = bunch.images.astype(np.float32)
        return ArrayData(x, bunch.target.astype(np.int64), [str(c) for c in range(10)], "digits")
    kwargs: dict[str, Any] = {"data_dir": data_dir}
    if label_column is not None:
        kwargs["label_column"] = label_column
    loaded = load_dataset(dataset, **kwargs)
    x = _first_attr(loaded, ("x", "features", "data", "images", "X"))
    y = _first_attr(loaded, ("y", "labels", "targets", "target"))
    names = getattr(loaded, "class_names", None) or getattr(loaded, "classes", None)
    x = np.asarray(x.numpy() if isinstance(x, Tensor) else x, dtype=np.float32)
    y = np.asarray(y.numpy() if isinstance(y, Tensor) else y).astype(np.int64)
    names = [str(n) for n in names] if names is not None else [str(c) for c in np.unique(y)]
    return ArrayData(x, y, names, str(getattr(loaded, "name", dataset)))


def _first_attr(obj: Any, names: tuple[str, ...]) -> Any:
    if isinstance(obj, tuple):
        return obj[0] if names[0] == "x" else obj[1]
    for name in names:
        if isinstance(obj, dict) and name in obj:
            return obj[name]
        if hasattr(obj, name):
            return getattr(obj, name)
    raise DataError(f"loaded dataset has none of the attributes {names}")


def split_indices(
    y: np.ndarray, kind: str, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train / test index arrays: ``stratified`` or ``held-out-classes``."""
    if kind == "stratified":
        from sklearn.model_selection import train_test_split

        index = np.arange(len(y))
        train, test = train_test_split(
            index, test_size=test_fraction, random_state=seed, stratify=y
        )
        return np.sort(train), np.sort(test)
    classes = np.unique(y)
    rng = np.random.default_rng(seed)
    n_test = max(2, round(len(classes) * test_fraction))
    if n_test >= len(classes) - 1:
        raise DataError(f"held-out-classes split needs more classes than {len(classes)}")
    test_classes = rng.permutation(classes)[:n_test]
    is_test = np.isin(y, test_classes)
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def build_loss(name: str, margin: float, metric: str, smoothing: float | None, reduction: str):
    """A tripletlab loss module by its CLI name."""
    import tripletlab

    classes = {
        "batch-all": "BatchAllTripletLoss",
        "batch-hard": "BatchHardTripletLoss",
        "semi-hard": "BatchSemiHardTripletLoss",
    }
    if name in classes:
        cls = getattr(tripletlab, classes[name], None)
        if cls is None:
            if name != "batch-all":
                raise ConfigError(f"loss {name!r} is not available yet")
            return _FallbackBatchAll(margin)
        return cls(margin=margin, metric=metric, smoothing=smoothing, reduction=reduction)
    if name == "contrastive":
        from tripletlab.nn.losses import BatchContrastiveLoss

        return BatchContrastiveLoss(margin=margin, metric=metric)
    raise ConfigError(f"config key 'loss.name': unknown loss {name!r}")


class _FallbackBatchAll(nn.Module):
    def __init__(self, margin: float) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, e: Tensor, labels: Tensor) -> Tensor:
        d = torch.cdist(e, e).pow(2)
        same = labels[:, None] == labels[None, :]
        pos = same & ~torch.eye(len(e), dtype=torch.bool)
        valid = pos[:, :, None] & ~same[:, None, :]
        values = (d[:, :, None] - d[:, None, :] + self.margin).clamp_min(0) * valid
        active = (values > 0).sum()
        return values.sum() / active.clamp_min(1)


def build_model(name: str, in_shape: tuple[int, ...], embedding_dim: int, **kw: Any) -> nn.Module:
    """An embedding network by name (``mlp`` or ``cnn``)."""
    from tripletlab.nn.networks import build_model as _build

    return _build(name, in_shape, embedding_dim, **kw)


def retrieval_metrics(
    embeddings: Tensor,
    labels: Tensor,
    *,
    full: bool = True,
    recall_at: tuple[int, ...] = (1, 2, 4, 8),
    knn_k: int = 5,
    metric: str = "sqeuclidean",
    seed: int = 0,
) -> dict[str, float]:
    """Retrieval metrics of embeddings, each query against all the others (leave-one-out);
    with ``full`` also the clustering metrics (NMI / AMI) of ``evaluate_embeddings``."""
    if full:
        try:
            from tripletlab.evaluate import evaluate_embeddings
        except ImportError:
            evaluate_embeddings = None
        if evaluate_embeddings is not None:
            out = evaluate_embeddings(embeddings, labels, ks=recall_at, knn_k=knn_k, metric=metric)
            return {k: float(v) for k, v in dict(out).items() if isinstance(v, (int, float))}
    try:
        from tripletlab.evaluate.retrieval import retrieval_metrics as _retrieval
    except ImportError:
        return _fallback_retrieval(embeddings, labels)
    out = _retrieval(embeddings, labels, ks=recall_at, knn_k=knn_k, metric=metric)
    return {k: float(v) for k, v in out.items()}


def _fallback_retrieval(embeddings: Tensor, labels: Tensor) -> dict[str, float]:
    e = embeddings.double()
    d = torch.cdist(e, e)
    d.fill_diagonal_(float("inf"))
    order = d.argsort(dim=1, stable=True)
    same = (labels[order] == labels[:, None]).double()
    r = (labels[:, None] == labels[None, :]).sum(1) - 1
    p1 = same[:, 0].mean().item()
    ranks = torch.arange(1, len(e), dtype=torch.float64)
    within = ranks[None, : len(e) - 1] <= r[:, None]
    hits = same[:, : len(e) - 1] * within
    prec = hits.cumsum(1) / ranks[None, : len(e) - 1]
    map_r = ((prec * hits).sum(1) / r.clamp_min(1)).mean().item()
    r_prec = (hits.sum(1) / r.clamp_min(1)).mean().item()
    return {"precision_at_1": p1, "r_precision": r_prec, "map_at_r": map_r}


def verification_curve(embeddings: Tensor, labels: Tensor, seed: int) -> dict[str, Any] | None:
    """ROC of same/different-class pairs; None until ``tripletlab.evaluate`` has it."""
    try:
        from tripletlab.evaluate import verification
    except ImportError:
        return None
    return verification.evaluate_verification(embeddings, labels, seed=seed)  # type: ignore[attr-defined]
