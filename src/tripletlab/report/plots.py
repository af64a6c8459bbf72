"""PNG figures of a run: training curves, a 2-D view of the embedding, the ROC curve.

All figures use matplotlib's non-interactive Agg backend (no display needed) and are written
with :func:`save_figure`.

* :func:`plot_training` — loss per step (with the epoch mean), the fractions of easy /
  semi-hard / hard triplets and the active fraction per step, and the validation retrieval
  metrics per epoch.
* :func:`plot_embedding` — the test embeddings projected to 2-D by PCA (or t-SNE),
  one colour per class (like the MNIST picture of seed 004).
* :func:`plot_roc` — ROC curves of same-/different-class pairs, trained vs raw features.

Example:
    >>> import numpy as np, tempfile
    >>> from tripletlab.report.plots import plot_embedding
    >>> rng = np.random.default_rng(0)
    >>> path = plot_embedding(rng.normal(size=(50, 4)), np.arange(50) % 3,
    ...                       tempfile.mkdtemp() + "/pca.png")
    >>> path.name
    'pca.png'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from tripletlab.atomic import atomic_write
from tripletlab.errors import InvalidArgumentError

__all__ = ["plot_embedding", "plot_roc", "plot_training", "project_2d", "save_figure"]

_FRACTIONS = (
    ("easy_fraction", "easy", "tab:green"),
    ("semi_hard_fraction", "semi-hard", "tab:orange"),
    ("hard_fraction", "hard", "tab:red"),
    ("active_fraction", "active (loss > 0)", "tab:blue"),
)


def save_figure(fig: Any, path: str | Path) -> Path:
    """Save ``fig`` as a PNG at ``path`` atomically (a full disk leaves no half image) and
    close it."""
    try:
        return atomic_write(
            path, lambda handle: fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
        )
    finally:
        plt.close(fig)


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def plot_training(
    steps: Sequence[Mapping[str, Any]],
    epochs: Sequence[Mapping[str, Any]],
    path: str | Path,
    loss_title: str = "training loss",
) -> Path:
    """Loss, triplet-type fractions (per step) and validation metrics (per epoch).

    Args:
        steps: step records (``epoch``, ``step``, ``loss`` and optionally the fractions).
        epochs: epoch records (``epoch``, ``step``, ``loss``, ``val_*`` metrics).
        path: where the PNG goes.
        loss_title: title of the loss panel (say what the loss averages over).
    """
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    step_ids = np.array([s["step"] for s in steps], dtype=float)
    window = max(1, len(steps) // 50)

    ax = axes[0]
    if len(steps):
        loss = np.array([s["loss"] for s in steps], dtype=float)
        ax.plot(step_ids, loss, color="0.75", lw=0.8, label="per step")
        ax.plot(step_ids, _smooth(loss, window), color="tab:blue", lw=1.5, label="moving mean")
    if len(epochs):
        ax.plot(
            [e["step"] for e in epochs],
            [e["loss"] for e in epochs],
            "o",
            color="tab:red",
            ms=3,
            label="epoch mean",
        )
    ax.set(title=loss_title, xlabel="step", ylabel="loss")
    if len(steps) or len(epochs):
        ax.legend(fontsize=8)

    ax = axes[1]
    drawn = False
    for key, label, colour in _FRACTIONS:
        values = np.array([s.get(key, np.nan) for s in steps], dtype=float)
        if len(values) and np.isfinite(values).any():
            # A log axis: late in training the hard / semi-hard fractions are tiny but are
            # the triplets that still teach; clipped at 1e-4 so zeros stay on the plot.
            smooth = np.clip(_smooth(values, window), 1e-4, None)
            ax.plot(step_ids, smooth, label=label, color=colour, lw=1.5)
            drawn = True
    ax.set(
        title="triplets in the batch (log scale)",
        xlabel="step",
        ylabel="fraction of valid triplets",
    )
    ax.set_yscale("log")
    ax.set_ylim(8e-5, 1.5)
    if drawn:
        ax.legend(fontsize=8)
    else:
        ax.text(
            0.5, 0.5, "the loss reports no triplet statistics", ha="center", transform=ax.transAxes
        )

    ax = axes[2]
    val_keys = sorted({k for e in epochs for k in e if k.startswith("val_")})
    preferred = [
        k for k in ("val_precision_at_1", "val_map_at_r", "val_r_precision") if k in val_keys
    ]
    for key in preferred or val_keys[:4]:
        rows = [(e["epoch"], e[key]) for e in epochs if e.get(key) is not None]
        if rows:
            xs, ys = zip(*rows, strict=True)
            ax.plot(xs, ys, "o-", ms=3, label=key.removeprefix("val_"))
    ax.set(title="validation retrieval", xlabel="epoch", ylabel="metric")
    if preferred or val_keys:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def project_2d(embeddings: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """Project (N, D) embeddings to (N, 2) with ``pca`` or ``tsne`` (scikit-learn)."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.shape[1] == 1:
        return np.column_stack([x[:, 0], np.zeros(len(x))])
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(x)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
        # Exact gradients up to 1,500 points: for the few hundred test points of digits they
        # cost 2 s of CPU where Barnes-Hut took 8-19 s here (its threads spin on a busy CPU).
        return TSNE(
            n_components=2,
            init="pca",
            perplexity=perplexity,
            random_state=seed,
            max_iter=500,
            method="exact" if len(x) <= 1500 else "barnes_hut",
            n_jobs=1,
        ).fit_transform(x)
    raise InvalidArgumentError(f"method must be 'pca' or 'tsne'; got {method!r}")


def plot_embedding(
    embeddings: np.ndarray,
    labels: np.ndarray,
    path: str | Path,
    class_names: Sequence[str] | None = None,
    method: str = "pca",
    title: str | None = None,
    seed: int = 0,
) -> Path:
    """A 2-D scatter of the embeddings coloured by class (PCA or t-SNE projection)."""
    labels = np.asarray(labels)
    points = project_2d(embeddings, method, seed)
    classes = np.unique(labels)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    for i, c in enumerate(classes):
        mask = labels == c
        name = (
            class_names[int(c)]
            if class_names is not None and 0 <= int(c) < len(class_names)
            else str(c)
        )
        ax.scatter(
            points[mask, 0], points[mask, 1], s=8, alpha=0.75, color=cmap(i % cmap.N), label=name
        )
    if len(classes) <= 20:
        ax.legend(markerscale=2, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    shown = {"pca": "PCA", "tsne": "t-SNE"}.get(method, method)
    ax.set(title=title or f"test embeddings ({shown})", xlabel=f"{shown} 1", ylabel=f"{shown} 2")
    return save_figure(fig, path)


def plot_roc(
    curves: Mapping[str, Mapping[str, Any]],
    path: str | Path,
) -> Path:
    """ROC curves (true accept rate vs false accept rate), one per entry of ``curves``.

    Args:
        curves: ``{label: {"fpr": array, "tpr": array, "auc": float}}``.
        path: where the PNG goes.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    for label, curve in curves.items():
        fpr = np.asarray(curve["fpr"], dtype=float)
        tpr = np.asarray(curve["tpr"], dtype=float)
        auc = curve.get("auc")
        text = f"{label} (AUC {auc:.4f})" if auc is not None else label
        for ax in axes:
            ax.plot(fpr, tpr, lw=1.5, label=text)
    axes[0].plot([0, 1], [0, 1], ls="--", color="0.6", lw=1)
    axes[0].set(title="verification ROC (same vs different class pairs)", xlim=(0, 1))
    # The log axis shows the low-FAR end that TAR@FAR (FaceNet's VAL@FAR) reads off.
    axes[1].set_xscale("log")
    axes[1].set(title="low false-accept end (log scale)", xlim=(1e-4, 1))
    for far in (1e-3, 1e-2):
        axes[1].axvline(far, ls=":", color="0.5", lw=1)
    for ax in axes:
        ax.set(xlabel="false accept rate", ylabel="true accept rate", ylim=(0, 1.01))
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
