"""A retrieval grid PNG: sampled queries, each followed by its top-k results, correct ones framed
green and wrong ones red — failures included on purpose, because they are what a reader needs
to see.

Images come from file paths (decoded with Pillow, any size or mode), from an array of images
((N, H, W), (N, H, W, C) or (N, C, H, W), e.g. Fashion-MNIST tensors), or — for feature-only
data — a stand-in tile: a flat colour per label (the label is in the caption above it).

Sampling: up to half the rows are queries whose first result is wrong (the failures), the rest
queries whose first result is right, each drawn with a seeded generator; queries without a
relevant gallery item are skipped.

Example:
    >>> import numpy as np, tempfile
    >>> top = np.array([[1, 2], [0, 2], [0, 1]]); rel = np.array([[True, False], [False, True], [False, False]])
    >>> path = plot_retrieval_grid(top, rel, np.array([0, 1, 2]), np.array([0, 0, 1]),
    ...                            tempfile.mkdtemp() + "/grid.png", n_queries=2)
    >>> path.name
    'grid.png'
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from tripletlab.report.plots import save_figure

ImageSource = Sequence[str | Path] | np.ndarray | None
_RIGHT, _WRONG, _QUERY = "#1a9850", "#d73027", "#4575b4"
_THUMB = 96  # pixels of the longer side a path image is reduced to (keeps the PNG small)


def sample_queries(
    top_relevant: np.ndarray, answerable: np.ndarray | None, n_queries: int, seed: int = 0
) -> np.ndarray:
    """Indices of up to ``n_queries`` queries: failures (wrong first result) first, up to half.

    Example:
        >>> rel = np.array([[True], [False], [True]])
        >>> sample_queries(rel, None, 3).tolist()
        [1, 0, 2]
    """
    rng = np.random.default_rng(seed)
    usable = np.ones(len(top_relevant), bool) if answerable is None else np.asarray(answerable)
    right = top_relevant[:, 0] if top_relevant.shape[1] else np.zeros(len(top_relevant), bool)
    failures = np.flatnonzero(usable & ~right)
    successes = np.flatnonzero(usable & right)
    n_fail = min(len(failures), max(n_queries - len(successes), n_queries // 2 + n_queries % 2))
    chosen_fail = np.sort(rng.choice(failures, n_fail, replace=False)) if n_fail else failures[:0]
    n_right = min(len(successes), n_queries - n_fail)
    chosen_right = (
        np.sort(rng.choice(successes, n_right, replace=False)) if n_right else successes[:0]
    )
    return np.concatenate([chosen_fail, chosen_right]).astype(np.int64)


def plot_retrieval_grid(
    top: np.ndarray,
    top_relevant: np.ndarray,
    query_labels: np.ndarray,
    gallery_labels: np.ndarray,
    path: str | Path,
    *,
    query_images: ImageSource = None,
    gallery_images: ImageSource = None,
    answerable: np.ndarray | None = None,
    n_queries: int = 8,
    k: int | None = None,
    class_names: dict[int, str] | None = None,
    seed: int = 0,
    title: str = "retrieval: query (blue) and top results (green = right, red = wrong)",
) -> Path:
    """Draw the grid (see the module docstring) and save it as a PNG.

    Args:
        top: (Q, K) gallery indices of each query's results, best first (−1 = none).
        top_relevant: (Q, K) bool, whether each result is relevant.
        query_labels, gallery_labels: labels shown under the tiles.
        path: where the PNG goes.
        query_images, gallery_images: paths, an image array, or None (stand-in tiles).
        answerable: (Q,) bool, queries that have a relevant gallery item (others skipped).
        n_queries: rows of the grid.
        k: results per row (default all K).
        class_names: label → name for the captions.
        seed: sampling seed.
    """
    k = top.shape[1] if k is None else min(k, top.shape[1])
    rows = sample_queries(top_relevant, answerable, n_queries, seed)
    names = class_names or {}
    n_rows = max(len(rows), 1)
    fig, axes = plt.subplots(n_rows, k + 1, figsize=(1.3 * (k + 1), 1.5 * n_rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if not len(rows):
        axes[0, 0].text(0.5, 0.5, "no answerable query", ha="center", va="center")
    for r, q in enumerate(rows):
        _tile(
            axes[r, 0],
            _image(query_images, q, query_labels),
            _QUERY,
            _caption(query_labels[q], names),
        )
        axes[r, 0].set_ylabel("failure" if not top_relevant[q, 0] else "", color=_WRONG, fontsize=7)
        for c in range(k):
            g = int(top[q, c])
            if g < 0:
                axes[r, c + 1].axis("off")
                continue
            colour = _RIGHT if top_relevant[q, c] else _WRONG
            image = _image(gallery_images, g, gallery_labels)
            _tile(axes[r, c + 1], image, colour, f"{c + 1}: {_caption(gallery_labels[g], names)}")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def _caption(label: Any, names: dict[int, str]) -> str:
    text = names.get(int(label), str(int(label)))
    return text if len(text) <= 14 else text[:13] + "…"


def _tile(ax: Any, image: np.ndarray, colour: str, caption: str) -> None:
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(3)
    ax.set_title(caption, fontsize=6, color=colour)


def _image(source: ImageSource, index: int, labels: np.ndarray) -> np.ndarray:
    """A float image in [0, 1]: (H, W) grey or (H, W, 3) colour."""
    if source is None:
        return _stand_in(int(labels[index]))
    if isinstance(source, np.ndarray):
        return _array_image(source[index])
    from PIL import Image  # Pillow is a matplotlib dependency; loaded only for path images

    with Image.open(source[index]) as image:
        image = image.convert("RGB")
        image.thumbnail((_THUMB, _THUMB))
        return np.asarray(image, dtype=np.float64) / 255.0


def _array_image(array: np.ndarray) -> np.ndarray:
    image = np.asarray(array, dtype=np.float64)
    if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
        image = np.moveaxis(image, 0, -1)  # (C, H, W) → (H, W, C)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    low, high = float(image.min()), float(image.max())
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def _stand_in(label: int) -> np.ndarray:
    """A flat tile whose colour is fixed by the label (feature-only data has no pixels)."""
    colour = np.array(plt.get_cmap("tab20")(label % 20)[:3])
    return np.broadcast_to(colour, (8, 8, 3)).copy()
