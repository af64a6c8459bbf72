"""The checks a run makes before it trains: what a resume continues (config and data
fingerprint), how many threads and how much memory it may take, whether its data stream.

Split out of :mod:`tripletlab.pipeline.training`, whose steps call them.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from tripletlab.errors import ConfigError
from tripletlab.pipeline.config import RunConfig
from tripletlab.pipeline.data import PreparedData
from tripletlab.pipeline.devices import check_threads
from tripletlab.pipeline.memory import (
    available_memory,
    check_run_memory,
    estimate_run_memory,
    parameter_count,
)
from tripletlab.pipeline.resume import data_fingerprint, resumed_config
from tripletlab.pipeline.run_dir import RunDir
from tripletlab.pipeline.trained import build_run_model
from tripletlab.train.checkpoint import load_checkpoint

__all__ = ["check_memory", "data_streams", "prepared_fingerprint", "resume_state", "run_threads"]


def resume_state(cfg: RunConfig, run: RunDir, extend: bool) -> tuple[RunConfig, str | None]:
    """The config to resume with and the data fingerprint the run stored (see
    :mod:`tripletlab.pipeline.resume`)."""
    if not run.checkpoint_path.is_file():
        raise ConfigError(f"--resume: no checkpoint at {run.checkpoint_path}")
    meta = load_checkpoint(run.checkpoint_path, required=("config",))["config"]
    meta = meta if isinstance(meta, dict) else {}
    saved = meta.get("run")
    if not isinstance(saved, dict):
        return cfg, None
    return resumed_config(cfg, saved, extend=extend), meta.get("data_fingerprint")


def run_threads(cfg: RunConfig) -> int | None:
    if cfg.train.threads is None and cfg.model.name == "mlp":
        return 1  # a small MLP is fastest on one thread, above all on a shared CPU
    return None if cfg.train.threads is None else check_threads(cfg.train.threads)


def check_memory(cfg: RunConfig, data: PreparedData) -> None:
    """Refuse a run the machine's memory cannot hold, before it starts (the built-in
    networks on in-memory data; a streamed image backbone's size is the user's checkpoint)."""
    if data_streams(data):
        return
    with torch.device("meta"):  # shapes only: a huge network costs nothing here
        shadow = build_run_model(cfg, data.in_shape)
    parts = estimate_run_memory(
        parameters=parameter_count(shadow),
        batch=cfg.train.p * cfg.train.k,
        dim=cfg.model.embedding_dim,
        in_features=math.prod(data.in_shape),
        n_test=len(data.y_test),
    )
    check_run_memory(parts, available_memory())


def data_streams(data: PreparedData) -> bool:
    return not isinstance(data.x_train, torch.Tensor)


def prepared_fingerprint(data: PreparedData) -> str:
    inputs = (data.x_train, data.x_val, data.x_test)
    labels = (data.y_train, data.y_val, data.y_test)
    if all(isinstance(x, torch.Tensor) for x in inputs):
        return data_fingerprint(*inputs, *labels)  # type: ignore[arg-type]
    # Streamed images: the files (in order) and the labels identify the data.
    names = "\n".join(_source_names(x) for x in inputs).encode("utf-8")
    files = torch.frombuffer(bytearray(b"files:" + names), dtype=torch.uint8)
    return data_fingerprint(files, *labels)


def _source_names(inputs: Any) -> str:
    path_of = getattr(inputs, "path", None)
    if callable(path_of):
        return "\n".join(str(path_of(i)) for i in range(len(inputs)))
    return f"{type(inputs).__name__}:{len(inputs)}"
