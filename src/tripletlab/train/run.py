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
from tripletlab.train.checkpoint import load_checkpoint
from tripletlab.train.config import RunConfig, config_from_dict
from tripletlab.train.factory import build_loss, build_network
from tripletlab.train.logging import RunLogger
from tripletlab.train.trainer import Trainer, build_optimizer, build_scheduler, torch_threads

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
    raw_test: Tensor  # the test inputs as loaded (the baseline is computed on these)


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


def _load(cfg: RunConfig, dataset: str | None = None, data_dir: str | None = None):
    from tripletlab.data import load_dataset

    kwargs: dict[str, Any] = {}
    if cfg.data.label_column is not None:
        kwargs["label_column"] = cfg.data.label_column
    return load_dataset(dataset or cfg.data.dataset, data_dir or cfg.data.data_dir, **kwargs)


def prepare_data(cfg: RunConfig) -> PreparedData:
    """Load ``cfg.data.dataset`` and split it into train / val / test tensors."""
    from tripletlab.data import split_indices, stratified_split

    dataset = _load(cfg)
    x, y = dataset.features, dataset.labels
    if cfg.data.max_samples is not None and cfg.data.max_samples < len(y):
        # A seeded stratified subset (class proportions kept).
        keep = stratified_split(y, 1 - cfg.data.max_samples / len(y), cfg.seed).train
        x, y = x[keep], y[keep]
        official = dataset.official_test[keep] if dataset.official_test is not None else None
    else:
        official = dataset.official_test
    if cfg.data.split == "official":
        if official is None:
            raise DataError(f"dataset {dataset.name!r} has no official test split")
        train, test = torch.nonzero(~official).squeeze(1), torch.nonzero(official).squeeze(1)
    else:
        train, test = split_indices(y, cfg.data.split, cfg.data.test_fraction, cfg.seed)
    val = torch.empty(0, dtype=torch.int64)
    if cfg.data.val_fraction > 0:
        # Validation is a stratified part of the training classes in every protocol.
        inner = stratified_split(y[train], cfg.data.val_fraction, cfg.seed + 1)
        train, val = train[inner.train], train[inner.test]
    # One scalar mean/std (of the training split): a scale that leaves the ranking of
    # distances, hence the raw-feature baseline, unchanged.
    mean = float(x[train].mean())
    std = float(x[train].std()) or 1.0

    def part(index: Tensor) -> tuple[Tensor, Tensor]:
        return ((x[index] - mean) / std).float(), y[index].long()

    (xt, yt), (xv, yv), (xs, ys) = part(train), part(val), part(test)
    return PreparedData(
        xt,
        yt,
        xv,
        yv,
        xs,
        ys,
        tuple(x.shape[1:]),
        list(dataset.class_names),
        mean,
        std,
        dataset.name,
        x[test].float(),
    )


def _build_model(cfg: RunConfig, in_shape: tuple[int, ...]) -> nn.Module:
    return build_network(
        cfg.model.name,
        in_shape,
        cfg.model.embedding_dim,
        cfg.model.hidden,
        cfg.model.activation,
        cfg.model.dropout,
    )


def _flat(x: Tensor) -> Tensor:
    return x.reshape(len(x), -1)


def _evaluate(
    emb: Tensor, labels: Tensor, cfg: RunConfig, full: bool, raw: bool = False
) -> tuple[dict[str, float], dict[str, Any] | None]:
    """Metrics (each test sample a query against all the others) and the ROC curve.

    ``full=False``: retrieval metrics only (the cheap per-epoch validation). Trained
    embeddings are ranked by the loss's distance, raw features by squared L2.
    """
    from tripletlab.evaluate import evaluate_embeddings, retrieval_metrics

    metric = "sqeuclidean" if raw else cfg.loss.metric
    kwargs = {"ks": tuple(cfg.eval.recall_at), "knn_k": cfg.eval.knn_k, "metric": metric}
    if not full:
        return {k: float(v) for k, v in retrieval_metrics(emb, labels, **kwargs).items()}, None
    out = evaluate_embeddings(emb, labels, seed=cfg.seed, return_curve=True, **kwargs)
    curve = out.pop("roc", None)
    if curve is not None:
        curve = dict(curve, auc=out.get("verification_auc"))
    return {k: float(v) for k, v in out.items()}, curve


def run_training(cfg: RunConfig, resume: bool = False) -> RunResult:
    """Train, evaluate against the raw-feature baseline and write the report.

    Args:
        cfg: the resolved run configuration.
        resume: continue from ``<run_dir>/checkpoints/last.pt`` (ConfigError if missing).

    Returns:
        A :class:`RunResult` with the test metrics, the baseline and the report path.
    """
    started = time.perf_counter()
    # --- distributed hook (issue 6): under torchrun, join the process group (with a timeout);
    # every rank trains (DDP, global mining), rank 0 alone writes config, logs, checkpoints,
    # metrics and the report.
    from tripletlab.train.distributed_training import distributed_context

    dctx = distributed_context()
    run_dir = cfg.out_dir
    checkpoint = run_dir / "checkpoints" / "last.pt"
    if resume and not checkpoint.is_file():
        raise ConfigError(f"--resume: no checkpoint at {checkpoint}")
    if resume:
        saved = load_checkpoint(checkpoint).get("config", {}).get("run")
        if saved is not None and saved != cfg.to_dict():
            # A resumed run keeps the config it started with, except the kill test hook.
            saved["train"]["kill_after_steps"] = cfg.train.kill_after_steps
            cfg = config_from_dict(saved)
    run_dir.mkdir(parents=True, exist_ok=True)
    if dctx.is_main:  # issue 6: rank 0 only
        (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    threads = cfg.train.threads
    if threads is None and cfg.model.name == "mlp":
        threads = 1  # a small MLP is fastest on one thread, above all on a shared CPU
    with torch_threads(threads):
        return _run(cfg, resume, run_dir, checkpoint, started, dctx)


def _run(
    cfg: RunConfig, resume: bool, run_dir: Path, checkpoint: Path, started: float, dctx: Any
) -> RunResult:
    torch.manual_seed(cfg.seed)
    data = prepare_data(cfg)
    model = _build_model(cfg, data.in_shape)
    loss = build_loss(
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
        return _evaluate(emb, data.y_val, cfg, full=False)[0]

    meta = {
        "run": cfg.to_dict(),
        "in_shape": list(data.in_shape),
        "input_mean": data.input_mean,
        "input_std": data.input_std,
        "class_names": data.class_names,
    }
    logger = RunLogger(run_dir) if dctx.is_main else None  # issue 6: rank 0 logs
    try:
        trainer = dctx.trainer_class(  # issue 6: DistributedTrainer under torchrun
            model,
            loss,
            optimizer,
            scheduler=scheduler,
            normalize=cfg.model.normalize,
            grad_clip=cfg.optim.grad_clip,
            device=cfg.train.device,
            logger=logger,
            validate=validate if dctx.is_main else None,  # issue 6
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
        if logger is not None:
            logger.close()
    if not dctx.is_main:  # issue 6: the other ranks are done; rank 0 evaluates and reports
        dctx.close()
        extra = {"rank": dctx.rank, "dataset": data.dataset, "n_test": len(data.y_test)}
        return RunResult(run_dir, {}, {}, history, None, time.perf_counter() - started, extra)

    eval_started = time.perf_counter()
    test_emb = trainer.embed(data.x_test, cfg.eval.batch_size)
    metrics, verification = _evaluate(test_emb, data.y_test, cfg, full=True)
    baseline, baseline_verification = _evaluate(
        _flat(data.raw_test), data.y_test, cfg, full=True, raw=True
    )
    eval_seconds = time.perf_counter() - eval_started
    np.savez_compressed(
        run_dir / "test_embeddings.npz",
        embeddings=test_emb.numpy(),
        labels=data.y_test.numpy(),
        raw=_flat(data.raw_test).numpy(),
    )
    summary = {
        "dataset": data.dataset,
        "split": cfg.data.split,
        "n_train": len(data.y_train),
        "n_val": len(data.y_val),
        "n_test": len(data.y_test),
        "test": metrics,
        "baseline": baseline,
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
    dctx.close()  # issue 6: leave the process group (no-op in a single process)
    return RunResult(run_dir, metrics, baseline, history, report_path, seconds, summary)


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
        x = data.raw_test
        y, name = data.y_test, data.dataset
        raw = x.numpy()
    else:
        loaded = _load(cfg, dataset, data_dir)
        raw, y, name = loaded.features.numpy(), loaded.labels, loaded.name
    emb = _embed_with(model, meta, raw)
    return {
        "dataset": name,
        "n": len(y),
        "metrics": _evaluate(emb, y, cfg, full=True)[0],
        "baseline": _evaluate(_flat(torch.as_tensor(raw, dtype=torch.float32)), y, cfg, True, True)[
            0
        ],
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
    from tripletlab.data import load_dataset

    return load_dataset(str(path)).features.numpy()


def embed_file(run_dir: str | Path, input_path: str | Path, output: str | Path) -> tuple[int, int]:
    """Embed the samples in ``input_path`` with the run's model; write them to ``output``
    (.npy, float32). Returns (N, D)."""
    embeddings = embed_run(run_dir, read_input(input_path)).astype(np.float32)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    np.save(output, embeddings)
    return embeddings.shape[0], embeddings.shape[1]
