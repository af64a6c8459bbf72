"""A trained run, loaded for use: its model and how to feed it (:class:`TrainedModel`), and
the ``embed`` verb (:func:`embed_run`, :func:`embed_file`).

Example:
    >>> from tripletlab.pipeline.trained import embed_run
    >>> embed_run("runs/digits-mlp", samples).shape  # doctest: +SKIP
    (10, 32)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from tripletlab.atomic import atomic_write
from tripletlab.errors import DataError
from tripletlab.nn.embedding import embed
from tripletlab.pipeline.config import RunConfig, config_from_dict
from tripletlab.pipeline.data import read_input
from tripletlab.pipeline.factories import build_network
from tripletlab.pipeline.run_dir import RunDir
from tripletlab.train.checkpoint import CheckpointError, check_fits, load_checkpoint
from tripletlab.train.run_status import require_completed

__all__ = ["TrainedModel", "build_run_model", "embed_file", "embed_run", "load_run"]


def build_run_model(
    cfg: RunConfig, in_shape: tuple[int, ...], *, streamed: bool = False
) -> nn.Module:
    """The (untrained) network of a run's config for samples of ``in_shape``.

    ``streamed``: the run read an image folder lazily (or uses an ``hf:`` / factory
    backbone): the model is an image :class:`~tripletlab.nn.heads.Embedder` built with
    ``pretrained=False`` (its weights come from the checkpoint).
    """
    if streamed:
        from tripletlab.pipeline.images import build_image_model

        return build_image_model(cfg, in_shape, pretrained=False)[0]
    m = cfg.model
    return build_network(m.name, in_shape, m.embedding_dim, m.hidden, m.activation, m.dropout)


@dataclass
class TrainedModel:
    """A run's trained network (eval mode) and what its inputs need.

    Attributes:
        model: the network.
        cfg: the run's configuration.
        in_shape: the shape of one sample the model was trained on.
        input_mean, input_std: the scalar standardisation of the training split.
        meta: the metadata stored in the checkpoint (``run``, ``in_shape``, ``class_names``…).
        checkpoint: the file it was loaded from.
    """

    model: nn.Module
    cfg: RunConfig
    in_shape: tuple[int, ...]
    input_mean: float
    input_std: float
    meta: dict[str, Any]
    checkpoint: Path

    @classmethod
    def load(cls, run_dir: str | Path) -> TrainedModel:
        """The trained model of ``run_dir`` (``final.pt``, else ``last.pt``)."""
        require_completed(run_dir)  # a failed or killed run: one line, not a stale model
        path = RunDir(run_dir).trained_checkpoint()
        state = load_checkpoint(path, map_location="cpu", required=("model", "config"))
        meta = state["config"]
        if not isinstance(meta, dict) or not isinstance(meta.get("run"), dict):
            raise CheckpointError(f"checkpoint {path} holds no run configuration")
        cfg = config_from_dict(meta["run"])

        def restore() -> TrainedModel:
            in_shape = tuple(int(s) for s in meta["in_shape"])
            model = build_run_model(cfg, in_shape, streamed=bool(meta.get("streamed", False)))
            model.load_state_dict(state["model"])
            mean, std = float(meta["input_mean"]), float(meta["input_std"])
            return cls(model.eval(), cfg, in_shape, mean, std, meta, path)

        trained: TrainedModel = check_fits(path, restore)
        return trained

    @property
    def metric(self) -> str:
        """The distance the run was trained (and is evaluated) with."""
        return self.cfg.loss.metric

    def inputs(self, samples: np.ndarray) -> Tensor:
        """Samples (N, ...) of the run's sample shape (or flattened), standardised as in
        training. DataError when their size does not match."""
        x = np.asarray(samples, dtype=np.float32)
        size = math.prod(self.in_shape)
        if x.ndim >= 2 and tuple(x.shape[1:]) != self.in_shape and math.prod(x.shape[1:]) == size:
            x = x.reshape(len(x), *self.in_shape)
        if x.ndim < 2 or math.prod(x.shape[1:]) != size:
            raise DataError(
                f"input samples have shape {tuple(x.shape[1:])}; the run was trained on "
                f"{self.in_shape}"
            )
        finite = np.isfinite(x.reshape(len(x), size)).all(axis=1)
        if not finite.all():
            first = int(np.flatnonzero(~finite)[0])
            raise DataError(
                f"input samples contain NaN or Inf ({int((~finite).sum())} samples, first "
                f"sample {first}); their embeddings would be meaningless"
            )
        return torch.from_numpy((x - self.input_mean) / self.input_std).float()

    def embed(self, samples: np.ndarray) -> Tensor:
        """Embeddings (N, D) of raw ``samples`` (N, ...), as the run computes them; (0, D)
        for no samples."""
        inputs = self.inputs(samples)
        if len(inputs) == 0:  # the network itself says D: one empty forward pass
            with torch.no_grad():
                return self.model(inputs).detach().float().cpu()
        return embed(
            self.model,
            inputs,
            self.cfg.eval.batch_size,
            normalize=self.cfg.model.normalize,
        )


def load_run(run_dir: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The trained model (eval mode) and its checkpoint metadata from ``run_dir``."""
    trained = TrainedModel.load(run_dir)
    return trained.model, trained.meta


def embed_run(run_dir: str | Path, x: np.ndarray) -> np.ndarray:
    """Embeddings (N, D) of samples ``x`` (N, ...) with the run's trained model."""
    embeddings: np.ndarray = TrainedModel.load(run_dir).embed(x).numpy()
    return embeddings


def embed_file(run_dir: str | Path, input_path: str | Path, output: str | Path) -> tuple[int, int]:
    """The ``embed`` verb: embed the samples in ``input_path`` with the run's model and write
    them to exactly ``output`` (.npy format, float32, whatever the suffix; atomically).
    Returns (N, D)."""
    embeddings = embed_run(run_dir, read_input(input_path)).astype(np.float32)
    atomic_write(output, lambda handle: np.save(handle, embeddings))
    return embeddings.shape[0], embeddings.shape[1]
