"""The whole run, from data to report: :func:`run_training` behind ``tripletlab train``.

Steps: load the data → split it (seeded; stratified or held-out classes; a validation part of
the training split) → train with :class:`~tripletlab.train.trainer.Trainer` (validation
retrieval metrics every epoch, a checkpoint every epoch) → evaluate the test split's
embeddings *and the raw input features* with the same metrics (the baseline: what training
bought) → write ``metrics.json`` and the report (``report.md`` + PNG figures).

The run directory (``runs/<name>/`` by default) holds:
    ``config.json``            the resolved configuration
    ``metrics.json``           test metrics, baseline metrics, verification, timings
    ``steps.jsonl``, ``epochs.jsonl``, ``epochs.csv``   logs (``tensorboard/`` if installed)
    ``checkpoints/last.pt``, ``checkpoints/final.pt``   resumable checkpoints
    ``test_embeddings.npz``    the test split's embeddings and labels
    ``report.md`` + ``*.png``  the report

Example:
    >>> from tripletlab.train.config import load_config
    >>> from tripletlab.train.run import run_training
    >>> cfg = load_config(None, {"train.epochs": 1, "out": "/tmp/tl-doc-run",
    ...                          "report.enabled": False, "train.progress": False})
    >>> result = run_training(cfg)  # doctest: +SKIP
    >>> sorted(result.metrics)[:2]  # doctest: +SKIP
    ['ami', 'knn_accuracy']
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from tripletlab.errors import ConfigError, DataError
from tripletlab.train import _adapters
from tripletlab.train.checkpoint import load_checkpoint
from tripletlab.train.config import RunConfig, config_from_dict
from tripletlab.train.logging import RunLogger
from tripletlab.train.trainer import Trainer, build_optimizer, build_scheduler

__all__ = [
    "PreparedData",
    "RunResult",
    "embed_file",
    "embed_run",
    "evaluate_run",
    "load_run",
    "prepare_data",
    "run_training",
]

#: Metrics printed by the CLI and put first in the report table.
KEY_METRICS = ("precision_at_1", "map_at_r", "r_precision")


@dataclass
class PreparedData:
    """The splits of one dataset as tensors, plus what the model needs to know."""

    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    in_shape: tuple[int, ...]
    class_names: list[str]
    input_mean: float
    input_std: float
    dataset: str


@dataclass
class RunResult:
    """What :func:`run_training` returns (and writes into ``run_dir``)."""

    run_dir: Path
    metrics: dict[str, float]
    baseline: dict[str, float]
    history: list[dict[str, Any]]
    report_path: Path | None
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def _subset(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    # A seeded, stratified subset of n samples (keeps class proportions).
    if n >= len(y):
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(np.arange(len(y)), train_size=n, random_state=seed, stratify=y)
    return np.sort(keep)


def prepare_data(cfg: RunConfig) -> PreparedData:
    """Load ``cfg.data.dataset`` and split it into train / val / test tensors."""
    data = _adapters.load_data(cfg.data.dataset, cfg.data.data_dir, cfg.data.label_column)
    x, y = data.x, data.y
    if len(np.unique(y)) < 2:
        raise DataError(f"dataset {cfg.data.dataset!r} has fewer than 2 classes")
    if cfg.data.max_samples is not None:
        keep = _subset(y, cfg.data.max_samples, cfg.seed)
        x, y = x[keep], y[keep]
    train, test = _adapters.split_indices(y, cfg.data.split, cfg.data.test_fraction, cfg.seed)
    val = np.array([], dtype=np.int64)
    if cfg.data.val_fraction > 0:
        # Validation is a stratified part of the training classes in both protocols.
        inner_train, inner_val = _adapters.split_indices(
            y[train], "stratified", cfg.data.val_fraction, cfg.seed + 1
        )
        train, val = train[inner_train], train[inner_val]
    x_train = x[train]
    # One scalar mean/std (from the training split): a scale that leaves distances' ranking,
    # hence the raw-feature baseline, unchanged.
    mean = float(x_train.mean())
    std = float(x_train.std()) or 1.0

    def tensors(index: np.ndarray) -> tuple[Tensor, Tensor]:
        return (
            torch.from_numpy(((x[index] - mean) / std).astype(np.float32)),
            torch.from_numpy(y[index].astype(np.int64)),
        )

    (xt, yt), (xv, yv), (xs, ys) = tensors(train), tensors(val), tensors(test)
    return PreparedData(
        xt, yt, xv, yv, xs, ys, tuple(x.shape[1:]), data.class_names, mean, std, data.name
    )


def _model_kwargs(cfg: RunConfig) -> dict[str, Any]:
    if cfg.model.name == "mlp":
        return {"hidden": tuple(cfg.model.hidden), "activation": cfg.model.activation}
    return {"activation": cfg.model.activation}


def _build_model(cfg: RunConfig, in_shape: tuple[int, ...]) -> nn.Module:
    # Normalisation is the Trainer's job (``normalize``), so the network's is left off.
    return _adapters.build_model(
        cfg.model.name, in_shape, cfg.model.embedding_dim, **_model_kwargs(cfg)
    )


def _flat(x: Tensor) -> Tensor:
    return x.reshape(len(x), -1)


def _evaluate(
    emb: Tensor, labels: Tensor, cfg: RunConfig, full: bool, raw: bool = False
) -> dict[str, float]:
    # Trained embeddings are ranked by the loss's distance; raw features by squared L2.
    return _adapters.retrieval_metrics(
        emb,
        labels,
        full=full,
        recall_at=tuple(cfg.eval.recall_at),
        knn_k=cfg.eval.knn_k,
        metric="sqeuclidean" if raw else cfg.loss.metric,
        seed=cfg.seed,
    )


def run_training(cfg: RunConfig, resume: bool = False) -> RunResult:
    """Train, evaluate against the raw-feature baseline and write the report.

    Args:
        cfg: the resolved run configuration.
        resume: continue from ``<run_dir>/checkpoints/last.pt`` (ConfigError if missing).

    Returns:
        A :class:`RunResult` with the test metrics, the baseline and the report path.
    """
    started = time.perf_counter()
    run_dir = cfg.out_dir
    checkpoint = run_dir / "checkpoints" / "last.pt"
    if resume and not checkpoint.is_file():
        raise ConfigError(f"--resume: no checkpoint at {checkpoint}")
    if resume:
        saved = load_checkpoint(checkpoint).get("config", {}).get("run")
        if saved is not None and saved != cfg.to_dict():
            cfg = config_from_dict(saved)  # a resumed run keeps the config it started with
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    if cfg.train.threads is not None:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.seed)
    data = prepare_data(cfg)
    model = _build_model(cfg, data.in_shape)
    loss = _adapters.build_loss(
        cfg.loss.name, cfg.loss.margin, cfg.loss.metric, cfg.loss.smoothing, cfg.loss.reduction
    )
    optimizer = build_optimizer(
        cfg.optim.name, model.parameters(), cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.momentum
    )
    scheduler = build_scheduler(
        cfg.optim.scheduler, optimizer, cfg.train.epochs, cfg.optim.step_size, cfg.optim.gamma
    )

    def validate(trainer: Trainer) -> dict[str, float]:
        if len(data.y_val) < 2:
            return {}
        emb = trainer.embed(data.x_val, cfg.eval.batch_size)
        return _evaluate(emb, data.y_val, cfg, full=False)

    meta = {
        "run": cfg.to_dict(),
        "in_shape": list(data.in_shape),
        "input_mean": data.input_mean,
        "input_std": data.input_std,
        "class_names": data.class_names,
    }
    logger = RunLogger(run_dir)
    try:
        trainer = Trainer(
            model,
            loss,
            optimizer,
            scheduler=scheduler,
            normalize=cfg.model.normalize,
            grad_clip=cfg.optim.grad_clip,
            device=cfg.train.device,
            logger=logger,
            validate=validate,
            validate_every=cfg.eval.validate_every,
            checkpoint_dir=run_dir / "checkpoints",
            checkpoint_every=cfg.train.checkpoint_every,
            config=meta,
            seed=cfg.seed,
            progress=cfg.train.progress,
            kill_after_steps=cfg.train.kill_after_steps,
        )
        train_started = time.perf_counter()
        history = trainer.fit(
            data.x_train,
            data.y_train,
            epochs=cfg.train.epochs,
            p=cfg.train.p,
            k=cfg.train.k,
            steps_per_epoch=cfg.train.steps_per_epoch,
            resume_from=checkpoint if resume else None,
        )
        train_seconds = time.perf_counter() - train_started
    finally:
        logger.close()

    eval_started = time.perf_counter()
    test_emb = trainer.embed(data.x_test, cfg.eval.batch_size)
    metrics = _evaluate(test_emb, data.y_test, cfg, full=True)
    baseline = _evaluate(_flat(data.x_test), data.y_test, cfg, full=True, raw=True)
    verification = _adapters.verification_curve(test_emb, data.y_test, seed=cfg.seed)
    baseline_verification = _adapters.verification_curve(
        _flat(data.x_test), data.y_test, seed=cfg.seed
    )
    eval_seconds = time.perf_counter() - eval_started
    np.savez_compressed(
        run_dir / "test_embeddings.npz",
        embeddings=test_emb.numpy(),
        labels=data.y_test.numpy(),
        raw=_flat(data.x_test).numpy(),
    )
    summary = {
        "dataset": data.dataset,
        "split": cfg.data.split,
        "n_train": len(data.y_train),
        "n_val": len(data.y_val),
        "n_test": len(data.y_test),
        "test": metrics,
        "baseline": baseline,
        "verification": _scalars(verification),
        "baseline_verification": _scalars(baseline_verification),
        "epochs": len(history),
        "steps": trainer.global_step,
        "train_seconds": train_seconds,
        "mean_epoch_seconds": float(np.mean([h["epoch_seconds"] for h in history])),
        "eval_seconds": eval_seconds,
    }
    report_path = None
    if cfg.report.enabled:
        from tripletlab.report.markdown import write_report

        report_path = write_report(
            run_dir,
            cfg=cfg,
            summary=summary,
            history=history,
            embeddings=test_emb.numpy(),
            labels=data.y_test.numpy(),
            class_names=data.class_names,
            verification=verification,
            baseline_verification=baseline_verification,
        )
    seconds = time.perf_counter() - started
    summary["total_seconds"] = seconds
    (run_dir / "metrics.json").write_text(json.dumps(_jsonable(summary), indent=2) + "\n")
    return RunResult(run_dir, metrics, baseline, history, report_path, seconds, summary)


def _scalars(result: dict[str, Any] | None) -> dict[str, float] | None:
    if result is None:
        return None
    return {
        k: float(v) for k, v in result.items() if isinstance(v, (int, float)) and math.isfinite(v)
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# -- using a finished run --------------------------------------------------------------------


def load_run(run_dir: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The trained model (eval mode) and its metadata from ``run_dir``'s final checkpoint."""
    run_dir = Path(run_dir)
    path = run_dir / "checkpoints" / "final.pt"
    if not path.is_file():
        path = run_dir / "checkpoints" / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint in {run_dir / 'checkpoints'} (is it a run?)")
    state = load_checkpoint(path)
    meta = state["config"]
    cfg = config_from_dict(meta["run"])
    model = _build_model(cfg, tuple(meta["in_shape"]))
    model.load_state_dict(state["model"])
    model.eval()
    return model, meta


def _embed_with(model: nn.Module, meta: dict[str, Any], x: np.ndarray) -> Tensor:
    cfg = config_from_dict(meta["run"])
    in_shape = tuple(meta["in_shape"])
    x = np.asarray(x, dtype=np.float32)
    if (
        x.ndim >= 2
        and tuple(x.shape[1:]) != in_shape
        and math.prod(x.shape[1:]) == math.prod(in_shape)
    ):
        x = x.reshape(len(x), *in_shape)
    if x.ndim < 2 or math.prod(x.shape[1:]) != math.prod(in_shape):
        raise DataError(
            f"input samples have shape {tuple(x.shape[1:])}; the run was trained on {in_shape}"
        )
    inputs = torch.from_numpy((x - meta["input_mean"]) / meta["input_std"]).float()
    trainer = Trainer(
        model,
        lambda e, y: e.sum(),
        torch.optim.SGD(model.parameters(), lr=0.0),
        normalize=cfg.model.normalize,
        progress=False,
    )
    return trainer.embed(inputs, cfg.eval.batch_size)


def embed_run(run_dir: str | Path, x: np.ndarray) -> np.ndarray:
    """Embeddings (N, D) of samples ``x`` (N, ...) with the run's trained model."""
    model, meta = load_run(run_dir)
    return _embed_with(model, meta, x).numpy()


def evaluate_run(
    run_dir: str | Path, dataset: str | None = None, data_dir: str | None = None
) -> dict[str, Any]:
    """Metrics of a trained run: on its own test split (default), or on all of ``dataset``.

    Returns ``{"dataset", "n", "metrics", "baseline"}``.
    """
    model, meta = load_run(run_dir)
    cfg = config_from_dict(meta["run"])
    if dataset is None:
        data = prepare_data(cfg)
        x = data.x_test * meta["input_std"] + meta["input_mean"]
        y, name = data.y_test, data.dataset
        raw = x.numpy()
    else:
        loaded = _adapters.load_data(dataset, data_dir, cfg.data.label_column)
        raw, y, name = loaded.x, torch.from_numpy(loaded.y), loaded.name
    emb = _embed_with(model, meta, raw)
    return {
        "dataset": name,
        "n": len(y),
        "metrics": _evaluate(emb, y, cfg, full=True),
        "baseline": _evaluate(_flat(torch.as_tensor(raw, dtype=torch.float32)), y, cfg, True, True),
    }


def read_input(path: str | Path) -> np.ndarray:
    """Samples to embed: a ``.npy`` array (N, ...), or any dataset ``load_dataset`` reads
    (``.npz``, ``.csv``, an image folder), whose labels are then ignored."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise DataError(f"{path}: cannot read as a numeric .npy array ({exc})") from None
    return _adapters.load_data(str(path), None, None).x


def embed_file(run_dir: str | Path, input_path: str | Path, output: str | Path) -> tuple[int, int]:
    """Embed the samples in ``input_path`` with the run's model; write them to ``output``
    (.npy, float32). Returns (N, D)."""
    embeddings = embed_run(run_dir, read_input(input_path)).astype(np.float32)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    np.save(output, embeddings)
    return embeddings.shape[0], embeddings.shape[1]
