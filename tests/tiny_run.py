"""A tiny run for in-process CLI and pipeline tests: 48 samples of 4 classes in an .npz
file, an MLP of 8 hidden units and a 3-D embedding, 2 epochs of 2×2 batches (about a second a run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tiny_dataset(folder: Path, shift: float = 0.0) -> Path:
    """``folder/tiny.npz``: 4 separated classes of 12 samples in 4-D (``shift`` moves all)."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 12)
    features = rng.normal(size=(48, 4)) + labels[:, None] * 2.0 + shift
    path = folder / "tiny.npz"
    np.savez(path, features=features, labels=labels)
    return path


def tiny_flags(folder: Path, **extra: object) -> dict[str, object]:
    """Dotted config overrides of the tiny run in ``folder/run`` (dataset made if missing)."""
    path = folder / "tiny.npz"
    flags: dict[str, object] = {
        "data.dataset": str(path if path.exists() else tiny_dataset(folder)),
        "model.hidden": [8],
        "model.embedding_dim": 3,
        "train.epochs": 2,
        "train.p": 2,
        "train.k": 2,
        "train.progress": False,
        "train.threads": 1,
        "report.enabled": False,
        "out": str(folder / "run"),
    }
    return flags | extra


def tiny_cli_args(folder: Path, *extra: str, report: bool = False) -> list[str]:
    """``tripletlab train`` arguments of the tiny run in ``folder/run``."""
    path = folder / "tiny.npz"
    if not path.exists():
        tiny_dataset(folder)
    config = folder / "tiny.toml"
    config.write_text(
        f'[data]\ndataset = "{path}"\n[model]\nhidden = [8]\nembedding_dim = 3\n'
        "[train]\np = 2\nk = 2\nprogress = false\nthreads = 1\n"
        f"[report]\nenabled = {'true' if report else 'false'}\ntsne = false\n"
    )
    return ["train", "--config", str(config), "--epochs", "2", "--out", str(folder / "run"),
            *extra]  # fmt: skip
