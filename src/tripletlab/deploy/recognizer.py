"""A recognizer: embed, identify, verify and enrol — with numpy, Pillow and onnxruntime only.

:class:`Recognizer` reads a folder written by :func:`~tripletlab.deploy.export.export_run`
or :func:`~tripletlab.deploy.bundle.make_bundle` (``model.onnx``, ``preprocess.json``,
``metadata.json``, and in a bundle ``thresholds.json`` and ``gallery.sqlite``) without
importing torch. :meth:`Recognizer.open` also takes a run directory (then torch is used to
run the model; the gallery defaults to ``<run>/gallery.sqlite``).

* identify: the ``top_k`` nearest enrolled identities of each query (an identity's distance
  is that of its nearest image); the answer is the nearest identity, or ``"unknown"`` when its
  distance is beyond the identification threshold (no threshold: always the nearest);
* verify: two inputs are the same identity when their distance is at most the verification
  threshold (Schroff et al., "FaceNet", CVPR 2015).

Example (needs an exported folder):
    >>> rec = Recognizer.open("bundle/")  # doctest: +SKIP
    >>> rec.enrol("alice", ["alice1.jpg", "alice2.jpg"])  # doctest: +SKIP
    [1, 2]
    >>> rec.identify(["query.jpg"])[0].identity  # doctest: +SKIP
    'alice'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tripletlab.deploy.files import read_json
from tripletlab.deploy.gallery_store import GalleryStore, IdentityInfo, Match
from tripletlab.deploy.images import DEFAULT_MAX_PIXELS, open_image, thumbnail_png
from tripletlab.deploy.preprocess import Preprocess
from tripletlab.deploy.vector_index import pairwise_distances
from tripletlab.errors import ConfigError, DataError

__all__ = ["UNKNOWN", "Identification", "ModelInfo", "OnnxEmbedder", "Recognizer", "Verification"]

#: The identity answered when no enrolled identity is within the identification threshold.
UNKNOWN = "unknown"
GALLERY_FILE = "gallery.sqlite"
#: Rows per onnxruntime call: bounds the activations' memory on large inputs.
ONNX_BATCH = 64

Embedder = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ModelInfo:
    """What the recognizer must know about the model besides its weights."""

    embedding_dim: int
    metric: str
    verification_threshold: float | None
    identification_threshold: float | None
    model_id: str | None
    description: str


@dataclass(frozen=True)
class Identification:
    """The answer for one query: the identity (or ``unknown``) and the top matches."""

    identity: str
    distance: float | None
    matches: list[Match] = field(default_factory=list)


@dataclass(frozen=True)
class Verification:
    """Distance between two inputs, the threshold and the decision ``distance ≤ threshold``."""

    distance: float
    threshold: float
    same: bool


class OnnxEmbedder:
    """An exported ONNX model run by onnxruntime on the CPU: (N, *input_shape) → (N, D)."""

    def __init__(
        self, path: str | Path, input_name: str, output_name: str, threads: int | None = None
    ) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise ConfigError(
                "running an exported model needs onnxruntime: pip install 'tripletlab[deploy]'"
            ) from None
        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        # Idle worker threads sleep instead of spinning: a server runs many small requests
        # side by side, and spinning threads would steal the cores the other requests need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's own exception types
            raise ConfigError(f"{path}: onnxruntime cannot load the model ({exc})") from None
        self.input_name, self.output_name = input_name, output_name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        chunks = [
            self.session.run([self.output_name], {self.input_name: batch[i : i + ONNX_BATCH]})[0]
            for i in range(0, len(batch), ONNX_BATCH)
        ]
        return np.concatenate(chunks).astype(np.float32, copy=False)


class Recognizer:
    """Embedder + preprocessing + gallery store (see the module docstring).

    Args:
        embed: maps preprocessed inputs (N, *input_shape) float32 to embeddings (N, D).
        preprocess: the input rule.
        info: dimension, metric, thresholds and the model fingerprint.
        store: the gallery (its dimension, metric and model must match ``info``).
    """

    def __init__(
        self, embed: Embedder, preprocess: Preprocess, info: ModelInfo, store: GalleryStore
    ) -> None:
        if store.dim != info.embedding_dim or store.metric != info.metric:
            raise ConfigError(
                f"{store.path} holds {store.dim}-d {store.metric} embeddings; the model makes "
                f"{info.embedding_dim}-d {info.metric} ones"
            )
        self._embed, self.preprocess, self.info, self.store = embed, preprocess, info, store

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        gallery: str | Path | None = None,
        threads: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> Recognizer:
        """A bundle, an exported folder (ONNX) or a run directory (needs torch).

        ``gallery``: the SQLite store to use (default: ``<path>/gallery.sqlite``, created
        empty when missing). ``threads``: onnxruntime's intra-op threads (PyTorch's, for a
        run directory). ``max_pixels``: the largest image decoded.
        """
        folder = Path(path)
        if (folder / "metadata.json").is_file():
            embed, preprocess, info = _open_export(folder, threads)
        elif (folder / "checkpoints").is_dir():
            embed, preprocess, info = _open_run(folder, threads)
        else:
            raise ConfigError(
                f"{folder} is neither an exported model or bundle (no metadata.json) nor a "
                "run directory (no checkpoints/)"
            )
        preprocess = dataclasses.replace(preprocess, max_pixels=max_pixels)
        store = GalleryStore(
            gallery if gallery is not None else folder / GALLERY_FILE,
            dim=info.embedding_dim,
            metric=info.metric,
            model_id=info.model_id,
        )
        return cls(embed, preprocess, info, store)

    # -- the verbs -------------------------------------------------------------------------

    def embed(self, inputs: Any) -> np.ndarray:
        """Embeddings (N, D) float32 of images, image files/bytes or arrays."""
        return self._embed(self.preprocess(inputs))

    def identify(self, inputs: Any, top_k: int = 5) -> list[Identification]:
        """Per input, the nearest identities and the decision (see the module docstring)."""
        found = self.store.search(self.embed(inputs), top_k)
        threshold = self.info.identification_threshold
        answers = []
        for matches in found:
            if not matches:
                answers.append(Identification(UNKNOWN, None, []))
                continue
            best = matches[0]
            known = threshold is None or best.distance <= threshold
            answers.append(
                Identification(best.identity if known else UNKNOWN, best.distance, matches)
            )
        return answers

    def verify(self, a: Any, b: Any, threshold: float | None = None) -> Verification:
        """Same identity or not, for one input ``a`` against one input ``b``."""
        tau = self.info.verification_threshold if threshold is None else float(threshold)
        if tau is None:
            raise ConfigError("the model has no verification threshold; pass one")
        ea, eb = self.embed([a]), self.embed([b])
        if len(ea) != 1 or len(eb) != 1:
            raise DataError("verify compares one input with one input")
        distance = float(pairwise_distances(ea, eb, self.info.metric)[0, 0])
        return Verification(distance, tau, distance <= tau)

    def enrol(
        self, identity: str, inputs: Sequence[Any], refs: Sequence[str | None] | None = None
    ) -> list[int]:
        """Add images (or arrays) of ``identity``; returns the new image ids once on disk."""
        items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        decoded = [self._decode(item) for item in items]
        embeddings = self.embed(decoded)
        if len(embeddings) != len(decoded):
            raise DataError("enrol takes one sample per input (not a batch array)")
        thumbnails = [thumbnail_png(d) if hasattr(d, "convert") else None for d in decoded]
        if refs is None:
            refs = [str(item) if isinstance(item, (str, Path)) else None for item in items]
        return self.store.enrol(identity, embeddings, refs=refs, thumbnails=thumbnails)

    def remove(self, identity: str) -> int:
        """Remove an identity and its images; returns how many images."""
        return self.store.remove(identity)

    def identities(self) -> list[IdentityInfo]:
        """Every enrolled identity with its number of images."""
        return self.store.identities()

    def close(self) -> None:
        """Close the gallery store."""
        self.store.close()

    def _decode(self, item: Any) -> Any:
        """Image paths and bytes → Pillow images (decoded once: embedding and thumbnail)."""
        is_npy = (isinstance(item, (str, Path)) and str(item).lower().endswith(".npy")) or (
            isinstance(item, bytes) and item.startswith(b"\x93NUMPY")
        )
        if isinstance(item, (str, Path, bytes)) and not is_npy and self.preprocess.kind == "image":
            return open_image(item, max_pixels=self.preprocess.max_pixels)
        return item


def _open_export(folder: Path, threads: int | None) -> tuple[Embedder, Preprocess, ModelInfo]:
    meta = read_json(folder / "metadata.json")
    if meta.get("format") != "tripletlab-export":
        raise ConfigError(f"{folder}/metadata.json is not a tripletlab export")
    if meta.get("model_format") != "onnx":
        raise ConfigError(
            f"{folder} holds a {meta.get('model_format')} model; the recognizer runs ONNX "
            "(export with format='onnx')"
        )
    preprocess = Preprocess.from_dict(read_json(folder / "preprocess.json"))
    thresholds = meta.get("thresholds") or {}
    if (folder / "thresholds.json").is_file():  # a bundle's own (possibly tuned) thresholds
        thresholds = read_json(folder / "thresholds.json")
    embed = OnnxEmbedder(
        folder / meta["model_file"], meta["input_name"], meta["output_name"], threads
    )
    info = ModelInfo(
        int(meta["embedding_dim"]),
        str(meta["metric"]),
        _float_or_none(thresholds.get("verification")),
        _float_or_none(thresholds.get("identification")),
        meta.get("source_fingerprint") or meta.get("model_sha256"),
        f"{meta['model_file']} ({meta['model_format']}) from {meta.get('source') or folder}",
    )
    return embed, preprocess, info


def _open_run(folder: Path, threads: int | None) -> tuple[Embedder, Preprocess, ModelInfo]:
    from tripletlab.deploy.run_loading import load_run

    if threads is not None:  # a run is served by PyTorch: its (process-wide) thread count
        import torch

        torch.set_num_threads(int(threads))

    run = load_run(folder)
    info = ModelInfo(
        run.embedding_dim,
        run.metric,
        run.thresholds.verification,
        run.thresholds.identification,
        run.fingerprint,
        f"run {run.source} (PyTorch)",
    )
    return run.embed_preprocessed, run.preprocess, info


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)
