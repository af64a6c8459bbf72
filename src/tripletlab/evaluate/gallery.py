"""A gallery index for recognition: identify a query among known identities, or verify a pair.

The gallery holds embeddings of labelled samples (the "enrolled" identities), their labels, a
string id per sample and the metric and verification threshold of the model that made them.

* identification — :meth:`GalleryIndex.search`: for each query the ``top_k`` nearest
  *identities* (each identity's distance is that of its nearest gallery sample), with the id of
  that sample;
* verification — :func:`verify_pairs`: two embeddings are the same identity when their
  distance is at most the threshold τ chosen in evaluation (the best-accuracy threshold of the
  ROC, ``verification_threshold`` in a run's ``metrics.json``).

File format (``GALLERY_FORMAT``, version ``GALLERY_VERSION``): one file written by
``torch.save`` holding only tensors, strings and numbers (``embeddings`` float32 (N, D),
``labels`` int64 (N,), and ``metadata`` — a JSON string with ids, metric, threshold, class
names and provenance). It is loaded with ``torch.load(weights_only=True)``, so opening an index
never runs code; a file of another format or a newer version is refused with a clear error.
Writes are atomic (temporary file, fsync, ``os.replace``).

Reference: Schroff, Kalenichenko, Philbin, "FaceNet", CVPR 2015 (verification at a distance
threshold, recognition as k-NN in the embedding).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from tripletlab.atomic import atomic_torch_save
from tripletlab.errors import DataError, InvalidArgumentError
from tripletlab.evaluate.knn import KNNBackend, TorchKNN
from tripletlab.functional.distances import METRICS, row_distance
from tripletlab.validation import check_choice, check_embeddings, check_labels

GALLERY_FORMAT = "tripletlab-gallery"
GALLERY_VERSION = 1

__all__ = [
    "GALLERY_FORMAT",
    "GALLERY_VERSION",
    "GalleryIndex",
    "IdentityMatches",
    "verify_pairs",
]


class IdentityMatches(NamedTuple):
    """The nearest identities of each query, nearest first.

    Attributes:
        labels: (Q, k) int64 identity labels (−1 where fewer than k identities exist).
        distances: (Q, k) distance to the identity's nearest gallery sample (inf if none).
        indices: (Q, k) int64 gallery row of that sample (−1 if none).
    """

    labels: Tensor
    distances: Tensor
    indices: Tensor


@dataclass
class GalleryIndex:
    """Embeddings of known identities, searchable by identity; saved in a safe, versioned file.

    Args:
        embeddings: (N, D) floating tensor (stored as float32 on CPU).
        labels: (N,) integer identity labels.
        ids: N unique strings naming the samples (file names, row numbers); default "0"…"N−1".
        metric: the distance the model was trained with (``"sqeuclidean"``, ``"euclidean"``,
            ``"cosine"``).
        threshold: verification threshold τ (same identity iff distance ≤ τ), or None.
        class_names: optional names of the labels (``class_names[label]``).
        info: free-form provenance saved with the index (run directory, checkpoint hash…);
            JSON-serialisable values only.

    Example:
        >>> g = GalleryIndex(torch.tensor([[0.0, 0], [0, 1], [5, 5]]), torch.tensor([7, 7, 3]))
        >>> m = g.search(torch.tensor([[0.0, 0.9]]), top_k=2)
        >>> m.labels.tolist(), m.indices.tolist()
        ([[7, 3]], [[1, 2]])
    """

    embeddings: Tensor
    labels: Tensor
    ids: list[str] | None = None
    metric: str = "sqeuclidean"
    threshold: float | None = None
    class_names: list[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        embeddings = check_embeddings(self.embeddings, "embeddings")
        self.embeddings = embeddings.detach().to("cpu", torch.float32).contiguous()
        self.labels = check_labels(self.labels, len(self.embeddings)).to("cpu", torch.long)
        check_choice(self.metric, "metric", METRICS)
        if len(self.embeddings) == 0:
            raise DataError("a gallery needs at least one sample")
        if self.ids is None:
            self.ids = [str(i) for i in range(len(self.embeddings))]
        self.ids = [str(i) for i in self.ids]
        if len(self.ids) != len(self.embeddings):
            raise InvalidArgumentError(
                f"ids must name every sample: {len(self.ids)} ids for {len(self.embeddings)} "
                "embeddings"
            )
        if len(set(self.ids)) != len(self.ids):
            raise InvalidArgumentError("ids must be unique")
        if self.threshold is not None:
            self.threshold = float(self.threshold)
            if not self.threshold >= 0:
                raise InvalidArgumentError(
                    f"threshold must be a distance >= 0; got {self.threshold!r}"
                )
        if self.class_names is not None:
            self.class_names = [str(c) for c in self.class_names]
            if int(self.labels.max()) >= len(self.class_names) or int(self.labels.min()) < 0:
                raise InvalidArgumentError("class_names must name every label (labels in 0…C−1)")

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def dim(self) -> int:
        return self.embeddings.shape[1]

    @property
    def num_identities(self) -> int:
        return int(self.labels.unique().numel())

    def name_of(self, label: int) -> str:
        """The class name of ``label`` (its number when the gallery has no names)."""
        if self.class_names is not None and 0 <= label < len(self.class_names):
            return self.class_names[label]
        return str(label)

    # --- identification -----------------------------------------------------------------

    def search(
        self, queries: Tensor, top_k: int = 5, *, backend: KNNBackend | None = None
    ) -> IdentityMatches:
        """The ``top_k`` nearest identities of each query.

        An identity's distance is the distance to its nearest gallery sample. The neighbours
        come from ``backend`` (default: exact :class:`TorchKNN`; a faiss index for large
        galleries) in a growing window until every query has ``top_k`` distinct identities
        or the window is the whole gallery, so the result is exact with an exact backend.

        Args:
            queries: (Q, D) embeddings made by the gallery's model.
            top_k: identities per query (≥ 1; at most the number of identities is returned
                filled, the rest is padded with −1 / inf).
            backend: a :class:`~tripletlab.evaluate.knn.KNNBackend`.

        Returns:
            :class:`IdentityMatches` with (Q, top_k) tensors.
        """
        queries = check_embeddings(queries, "queries")
        if queries.shape[1] != self.dim:
            raise InvalidArgumentError(
                f"queries have dimension {queries.shape[1]}; the gallery's embeddings have "
                f"{self.dim} (were they made by the same model?)"
            )
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise InvalidArgumentError(f"top_k must be a positive int; got {top_k!r}")
        backend = backend or TorchKNN()
        queries = queries.detach().to("cpu", torch.float32)
        n, wanted = len(self), min(top_k, self.num_identities)
        window = min(n, 4 * top_k)
        while True:
            found = backend.search(queries, window, self.embeddings, metric=self.metric)
            first, enough = _first_of_each_identity(self.labels, found.indices, wanted)
            if enough or window == n:
                break
            window = min(n, 4 * window)
        return _pick(first, found.indices, found.distances, self.labels, top_k)

    # --- persistence ---------------------------------------------------------------------

    def _metadata(self) -> dict[str, Any]:
        return {
            "format": GALLERY_FORMAT,
            "version": GALLERY_VERSION,
            "ids": self.ids,
            "metric": self.metric,
            "threshold": self.threshold,
            "class_names": self.class_names,
            "info": self.info,
        }

    def save(self, path: str | Path) -> Path:
        """Write the index to ``path`` atomically; returns the path."""
        path = Path(path)
        payload = {
            "format": GALLERY_FORMAT,
            "version": GALLERY_VERSION,
            "embeddings": self.embeddings,
            "labels": self.labels,
            "metadata": json.dumps(self._metadata()),
        }
        return atomic_torch_save(payload, path)

    @classmethod
    def load(cls, path: str | Path) -> GalleryIndex:
        """Read an index written by :meth:`save` (``weights_only=True``: no code runs).

        Raises:
            FileNotFoundError: no such file.
            DataError: not a tripletlab gallery, a newer format version, or a damaged file.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no gallery index at {path}")
        try:
            with warnings.catch_warnings():  # a foreign pickle's protocol warning is noise here
                warnings.simplefilter("ignore", UserWarning)
                payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # unpickling errors of every kind mean "not our file"
            raise DataError(f"{path} is not a readable tripletlab gallery index ({exc})") from None
        if not isinstance(payload, dict) or payload.get("format") != GALLERY_FORMAT:
            raise DataError(f"{path} is not a tripletlab gallery index")
        version = payload.get("version")
        if not isinstance(version, int) or version > GALLERY_VERSION:
            raise DataError(
                f"{path} is a gallery index of format version {version!r}; this tripletlab "
                f"reads versions up to {GALLERY_VERSION} (upgrade tripletlab)"
            )
        try:
            meta = json.loads(payload["metadata"])
            return cls(
                embeddings=payload["embeddings"],
                labels=payload["labels"],
                ids=meta["ids"],
                metric=meta["metric"],
                threshold=meta["threshold"],
                class_names=meta["class_names"],
                info=meta.get("info", {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: damaged gallery index ({exc})") from None


def _first_of_each_identity(labels: Tensor, neighbours: Tensor, wanted: int) -> tuple[Tensor, bool]:
    """(Q, k) mask of the neighbours that are the first (nearest) of their identity in the row,
    and whether every row has at least ``wanted`` of them."""
    q, k = neighbours.shape
    valid = neighbours >= 0
    none = labels.min() - 1  # a label no gallery sample has, for missing neighbours
    lab = torch.where(valid, labels[neighbours.clamp_min(0)], none)
    position = torch.arange(k).expand(q, k)
    # sort each row by (label, position): the first entry of each label run is its nearest
    order = torch.argsort(lab * k + position, dim=1)
    sorted_lab = lab.gather(1, order)
    starts = torch.ones_like(sorted_lab, dtype=torch.bool)
    starts[:, 1:] = sorted_lab[:, 1:] != sorted_lab[:, :-1]
    first = torch.zeros_like(starts).scatter_(1, order, starts) & valid
    return first, bool((first.sum(1) >= wanted).all())


def _pick(
    first: Tensor, neighbours: Tensor, distances: Tensor, labels: Tensor, top_k: int
) -> IdentityMatches:
    q, k = neighbours.shape
    position = torch.arange(k).expand(q, k)
    key = torch.where(first, position, torch.full_like(position, k))
    chosen = torch.sort(key, dim=1).values[:, :top_k]
    if chosen.shape[1] < top_k:  # fewer neighbours than top_k at all
        pad = torch.full((q, top_k - chosen.shape[1]), k, dtype=chosen.dtype)
        chosen = torch.cat([chosen, pad], dim=1)
    missing = chosen >= k
    safe = chosen.clamp_max(k - 1)
    index = neighbours.gather(1, safe).masked_fill(missing, -1)
    dist = distances.gather(1, safe).masked_fill(missing, float("inf"))
    lab = labels[index.clamp_min(0)].masked_fill(missing, -1)
    return IdentityMatches(lab, dist, index)


def verify_pairs(
    a: Tensor, b: Tensor, threshold: float, metric: str = "sqeuclidean"
) -> tuple[Tensor, Tensor]:
    """Same identity or not, for the pairs ``(a_i, b_i)``: ``distance ≤ threshold``.

    Args:
        a, b: (N, D) embeddings (or one (1, D) against N: broadcast).
        threshold: τ ≥ 0, the threshold chosen in evaluation.
        metric: the model's distance.

    Returns:
        ``(distances (N,), same (N,) bool)``.

    Example:
        >>> verify_pairs(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.3, 0.4], [3, 4]]), 1.0)
        (tensor([ 0.2500, 25.0000]), tensor([ True, False]))
    """
    check_choice(metric, "metric", METRICS)
    a = check_embeddings(a, "a").float()
    b = check_embeddings(b, "b").float()
    if a.shape[1] != b.shape[1]:
        raise InvalidArgumentError(
            f"a and b must have the same dimension; got {a.shape[1]} and {b.shape[1]}"
        )
    if len(a) != len(b):
        if len(a) == 1:
            a = a.expand_as(b)
        elif len(b) == 1:
            b = b.expand_as(a)
        else:
            raise InvalidArgumentError(
                f"a and b must have the same number of rows; got {len(a)} and {len(b)}"
            )
    if threshold is None or not float(threshold) >= 0:
        raise InvalidArgumentError(f"threshold must be a distance >= 0; got {threshold!r}")
    dist = row_distance(a, b, metric)
    return dist, dist <= float(threshold)
