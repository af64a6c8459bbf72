"""The training loop: model + metric-learning loss + optimiser + scheduler over P×K batches.

Each optimiser step draws a P×K batch (P classes, K samples each, from a seeded sampler
re-shuffled per epoch), embeds it, optionally L2-normalises the embeddings, evaluates the loss
``loss(embeddings, labels)`` — any tripletlab batch loss, e.g. ``BatchAllTripletLoss`` — and
steps the optimiser (with optional gradient-norm clipping). Each step's loss and triplet
statistics (active / easy / semi-hard / hard fractions) are logged; each epoch ends with a
validation callback (retrieval metrics), an epoch record and a checkpoint.

Determinism: the sampler is seeded with ``seed`` and re-seeded by epoch, the torch / numpy /
Python RNG states are stored in every checkpoint, so ``fit(..., resume_from=checkpoint)``
continues a killed run and ends with exactly the weights (and metrics) of an uninterrupted run.

The hot loop never calls ``.item()``: per-step values stay tensors and are converted once per
epoch, when the step records are written.

Reference: Hermans, Beyer & Leibe, "In Defense of the Triplet Loss for Person
Re-Identification", 2017 (P×K batches, batch-all / batch-hard).

Example:
    >>> import torch
    >>> from tripletlab.train.trainer import Trainer
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <...>
    >>> x = torch.randn(60, 5); y = torch.arange(60) % 3
    >>> model = torch.nn.Linear(5, 2)
    >>> def loss(e, labels):  # any f(embeddings, labels) -> scalar works
    ...     return torch.pdist(e).mean() * 0
    >>> trainer = Trainer(model, loss, torch.optim.SGD(model.parameters(), lr=0.1), progress=False)
    >>> history = trainer.fit(x, y, epochs=2, p=3, k=4)
    >>> len(history)
    2
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from tripletlab._moved import moved_names
from tripletlab.data.sampler import PKSampler
from tripletlab.errors import InvalidArgumentError
from tripletlab.nn.embedding import DEFAULT_EMBED_BATCH, embed, l2_normalize
from tripletlab.nn.loss_base import as_batch_loss
from tripletlab.train.devices import resolve_precision
from tripletlab.train.epoch_steps import EpochSteps, accumulation_step
from tripletlab.train.epoch_watch import watch_epoch
from tripletlab.train.loading import device_batches, make_loader
from tripletlab.train.logging import RunLogger
from tripletlab.train.progress import Progress
from tripletlab.train.streaming import LazyInputs
from tripletlab.train.threads import torch_threads
from tripletlab.train.trainer_options import check_trainer_options
from tripletlab.train.trainer_state import TrainerCheckpoints

if TYPE_CHECKING:
    from tripletlab.train.collapse import CollapseDetector
    from tripletlab.train.early_stopping import EarlyStopping

__all__ = ["Trainer", "make_pk_sampler", "torch_threads"]

# build_optimizer / build_scheduler moved to the pipeline's factories (they build by name).
__getattr__ = moved_names(
    __name__, dict.fromkeys(["build_optimizer", "build_scheduler"], "tripletlab.pipeline.factories")
)

LossFn = Callable[..., Any]
Validator = Callable[["Trainer"], Mapping[str, float]]


def make_pk_sampler(labels: Tensor, p: int, k: int, seed: int) -> PKSampler:
    """The seeded P×K batch sampler covering every training sample once per epoch."""
    return PKSampler(labels.cpu(), p=p, k=k, seed=seed, drop_last=False)


class Trainer(TrainerCheckpoints):
    """Trains an embedding network with a metric-learning loss over P×K batches.

    Args:
        model: maps a batch of inputs (B, ...) to embeddings (B, D).
        loss: a :class:`~tripletlab.nn.loss_base.BatchLoss` (every tripletlab batch loss:
            called with ``return_stats=True``, its statistics are logged per step), or a
            plain ``loss(embeddings, labels)`` → scalar (no statistics).
        optimizer: a torch optimiser over ``model``'s parameters.
        scheduler: optional per-epoch LR scheduler (stepped after each epoch).
        normalize: L2-normalise embeddings before the loss and in :meth:`embed`.
        grad_clip: maximum total gradient norm (None: no clipping).
        device: where the model and batches live.
        logger: a :class:`~tripletlab.train.logging.RunLogger` (None: no log files).
        validate: called after each epoch with the trainer; returns metrics to log.
        validate_every: run ``validate`` every so many epochs (and always after the last).
        checkpoint_dir: write ``last.pt`` every ``checkpoint_every`` epochs and ``final.pt``.
        config: a JSON-compatible dict stored in checkpoints (the resolved run config).
        seed: seeds the P×K sampler (and the RNGs at the start of a fresh ``fit``).
        progress: a :class:`~tripletlab.train.progress.Progress` (bars on a terminal, one
            flushed line per epoch otherwise), or a bool: ``Progress(enabled=progress)`` on
            stderr.
        kill_after_steps: test hook — SIGKILL the process after this many steps.
        precision: ``"32"``, ``"bf16"`` or ``"16-mixed"`` (autocast of the forward pass, plus
            a GradScaler for 16-mixed; see :mod:`tripletlab.train.devices`).
        accumulate_batches: sum the gradients of this many P×K batches (each loss divided
            by the group size) before an optimiser step; an epoch's last group may be
            shorter. A step record is still written per batch.
        epoch_start_hooks: called with the trainer at the start of every epoch, after
            ``model.train()`` and with ``epoch`` already counting the new epoch (e.g.
            :class:`~tripletlab.train.finetune.FreezeBackbone`).
        workers: DataLoader worker processes when ``fit`` / ``embed`` get a Dataset (images
            decoded in parallel; memory is pinned when training on CUDA).
        collapse: a :class:`~tripletlab.train.collapse.CollapseDetector` fed every step's
            record; its alarm goes to the epoch record, the log and ``progress``; with
            ``stop`` it raises ``TrainingCollapsed`` after the epoch's checkpoint.
        stopper: an :class:`~tripletlab.train.early_stopping.EarlyStopping`: ``best.pt``
            is written whenever the monitored metric improves, and training stops early
            when its patience runs out.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: LossFn,
        optimizer: torch.optim.Optimizer,
        *,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        normalize: bool = True,
        grad_clip: float | None = None,
        device: str | torch.device = "cpu",
        logger: RunLogger | None = None,
        validate: Validator | None = None,
        validate_every: int = 1,
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int = 1,
        config: Mapping[str, Any] | None = None,
        seed: int = 0,
        progress: bool | Progress = True,
        kill_after_steps: int | None = None,
        precision: str = "32",
        accumulate_batches: int = 1,
        epoch_start_hooks: Sequence[Callable[[Trainer], None]] = (),
        workers: int = 0,
        collapse: CollapseDetector | None = None,
        stopper: EarlyStopping | None = None,
    ) -> None:
        check_trainer_options(
            accumulate_batches, workers, grad_clip, validate_every, checkpoint_every
        )
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.loss = as_batch_loss(loss)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.normalize = normalize
        self.grad_clip = grad_clip
        self.logger = logger
        self.validate = validate
        self.validate_every = validate_every
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.checkpoint_every = checkpoint_every
        self.config = dict(config or {})
        self.seed = seed
        self.progress = progress if isinstance(progress, Progress) else Progress(enabled=progress)
        self.collapse = collapse
        self.stopper = stopper
        self.kill_after_steps = kill_after_steps
        self.epoch = 0
        self.global_step = 0
        self.history: list[dict[str, Any]] = []
        self.precision = resolve_precision(precision, self.device)
        self.scaler = self.precision.make_scaler()
        self.accumulate_batches = accumulate_batches
        self.epoch_start_hooks = list(epoch_start_hooks)
        self.workers = workers

    # -- embeddings ------------------------------------------------------------------------
    def _forward(self, inputs: Tensor) -> Tensor:
        with self.precision.autocast():
            embeddings = self.model(inputs)
        embeddings = embeddings.float()  # the losses work in float32 (DESIGN)
        return l2_normalize(embeddings) if self.normalize else embeddings

    @torch.no_grad()
    def embed(self, inputs: Tensor | Dataset, batch_size: int = DEFAULT_EMBED_BATCH) -> Tensor:
        """Embeddings (N, D) of ``inputs`` (N, ...) in eval mode, on the CPU: a tensor goes
        through :func:`tripletlab.nn.embedding.embed` (this trainer's model, normalisation and
        precision); a Dataset of ``(input, label)`` is read by a DataLoader with ``workers``."""
        if isinstance(inputs, Tensor):
            with self.precision.autocast():
                out = embed(
                    self.model, inputs, batch_size, normalize=self.normalize, device=self.device
                )
            return out.float()
        was_training = self.model.training
        self.model.eval()
        try:
            chunks = self._embed_chunks(inputs, batch_size)
        finally:
            self.model.train(was_training)
        if not chunks:
            return torch.empty(0, 0)
        return torch.cat(chunks)

    def _embed_chunks(self, inputs: Dataset | LazyInputs, batch_size: int) -> list[Tensor]:
        if not isinstance(inputs, Dataset):  # LazyInputs: read chunk by chunk in-process
            return [
                self._forward(inputs[i : i + batch_size].to(self.device)).cpu()
                for i in range(0, len(inputs), batch_size)
            ]
        loader = self._loader(inputs, batch_size=batch_size)
        return [self._forward(x).cpu() for x, _ in device_batches(loader, self.device)]

    # -- one step --------------------------------------------------------------------------
    def train_step(
        self,
        inputs: Tensor,
        labels: Tensor,
        *,
        zero_grad: bool = True,
        step: bool = True,
        loss_scale: float = 1.0,
    ) -> tuple[Tensor, Any]:
        """One batch: forward, backward and (with ``step``) an optimiser step; returns the
        detached loss and the loss's stats. ``zero_grad`` / ``step`` / ``loss_scale`` let a
        group of batches accumulate gradients (``accumulate_batches``)."""
        if zero_grad:
            self.optimizer.zero_grad(set_to_none=True)
        value, stats = self.loss(self._forward(inputs), labels, return_stats=True)
        scaled = value * loss_scale if loss_scale != 1.0 else value
        (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
        if step:
            self._optimizer_step()
        self.global_step += 1
        if self.kill_after_steps is not None and self.global_step >= self.kill_after_steps:
            os.kill(os.getpid(), signal.SIGKILL)  # a genuine kill, for resume tests
        return value.detach(), stats

    def _optimizer_step(self) -> None:
        if self.scaler is not None and self.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not scaled ones
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # skipped when the gradients hold inf / NaN
            self.scaler.update()
        else:
            self.optimizer.step()

    def _loader(self, dataset: Dataset, **options: Any) -> DataLoader:
        return make_loader(dataset, workers=self.workers, device=self.device, **options)

    # -- the loop --------------------------------------------------------------------------
    def fit(
        self,
        inputs: Tensor | Dataset,
        labels: Tensor,
        *,
        epochs: int,
        p: int,
        k: int,
        steps_per_epoch: int | None = None,
        resume_from: str | Path | None = None,
        sampler: Any = None,
    ) -> list[dict[str, Any]]:
        """Train for ``epochs`` epochs (in total, counting those before a resume).

        Args:
            inputs: training inputs (N, ...); kept on ``device`` and indexed per batch. Or a
                Dataset whose items are ``(input, label)`` (e.g. a streaming image folder):
                read through a DataLoader with the sampler as its batch sampler and
                ``workers`` processes, each batch moved to ``device``.
            labels: integer class labels (N,).
            epochs: total number of epochs.
            p, k: classes per batch and samples per class.
            steps_per_epoch: cap on the batches of an epoch (default: the sampler's length).
            resume_from: a checkpoint written by this trainer; training continues after its
                epoch, with its weights, optimiser, scheduler and RNG states.
            sampler: a batch sampler with ``set_epoch`` (default: a seeded P×K sampler).

        Returns:
            The epoch records (also in ``self.history``).
        """
        if epochs < 1:
            raise InvalidArgumentError(f"epochs must be >= 1; got {epochs!r}")
        n_inputs = len(inputs)  # type: ignore[arg-type]  # a Dataset given here must be sized
        if n_inputs != len(labels):
            raise InvalidArgumentError(
                f"inputs and labels must have the same length; got {n_inputs} and {len(labels)}"
            )
        self._start_run(resume_from)
        if not isinstance(inputs, Dataset):  # a tensor, or tensor-like LazyInputs
            inputs = inputs.to(self.device)
        labels = labels.to(self.device)
        sampler = sampler if sampler is not None else make_pk_sampler(labels, p, k, self.seed)
        self.progress.start_training(epochs, initial=self.epoch)
        try:
            while self.epoch < epochs:
                record = self._run_epoch(inputs, labels, sampler, steps_per_epoch, epochs)
                if record.get("early_stop"):
                    break
        finally:
            self.progress.close()
        self.save(self.FINAL_CHECKPOINT)
        return self.history

    def _batches(
        self, inputs: Tensor | Dataset, labels: Tensor, sampler: Any
    ) -> Iterator[tuple[Tensor, Tensor]]:
        if isinstance(inputs, (Tensor, LazyInputs)):  # indexable by a batch of indices
            for batch in sampler:
                index = torch.as_tensor(batch, device=self.device)
                yield inputs[index], labels[index]
            return
        yield from device_batches(self._loader(inputs, batch_sampler=sampler), self.device)

    def _run_epoch(
        self,
        inputs: Tensor | Dataset,
        labels: Tensor,
        sampler: Any,
        steps_per_epoch: int | None,
        epochs: int,
    ) -> dict[str, Any]:
        """One epoch: its steps, then validation, the watchers, logs and checkpoint."""
        self.model.train()
        self.epoch += 1
        for hook in self.epoch_start_hooks:
            hook(self)
        sampler.set_epoch(self.epoch)
        total = len(sampler) if steps_per_epoch is None else min(steps_per_epoch, len(sampler))
        started = time.perf_counter()
        steps = self._train_steps(self._batches(inputs, labels, sampler), total)
        train_seconds = time.perf_counter() - started
        if self.scheduler is not None:
            self.scheduler.step()
        step_records, record = steps.records(
            epoch=self.epoch,
            last_step=self.global_step,
            seconds=train_seconds,
            current_lr=self.optimizer.param_groups[0]["lr"],
        )
        if self.validate is not None and (
            self.epoch % self.validate_every == 0 or self.epoch == epochs
        ):
            record |= {f"val_{key}": float(v) for key, v in self.validate(self).items()}
        self._watch(record, step_records)
        self._end_epoch(record, step_records, epochs)
        return record

    def _train_steps(self, batches: Iterator[tuple[Tensor, Tensor]], total: int) -> EpochSteps:
        """At most ``total`` training steps over ``batches``, gradients accumulated in groups
        of ``accumulate_batches``."""
        steps = EpochSteps()
        self.progress.start_epoch(self.epoch, total)
        for i, (batch_inputs, batch_labels) in enumerate(itertools.islice(batches, total)):
            zero_grad, step, loss_scale = accumulation_step(i, total, self.accumulate_batches)
            value, stats = self.train_step(
                batch_inputs, batch_labels, zero_grad=zero_grad, step=step, loss_scale=loss_scale
            )
            steps.add(value, stats, self.optimizer.param_groups[0]["lr"])
            self.progress.step(value)
        return steps

    def _end_epoch(
        self, record: dict[str, Any], step_records: list[dict[str, Any]], epochs: int
    ) -> None:
        """History, logs and ``last.pt`` of a finished epoch; a collapse stop raises last."""
        self.history.append(record)
        if self.logger is not None:
            self.logger.log_steps(step_records)
            self.logger.log_epoch(record)
        if (
            self.epoch % self.checkpoint_every == 0
            or self.epoch == epochs
            or self._stopping
            or record.get("early_stop")
        ):
            self.save(self.LAST_CHECKPOINT)
        self.progress.end_epoch(record)
        if self.collapse is not None:
            self.collapse.raise_if_stopping()  # after last.pt: the run can be inspected

    @property
    def _stopping(self) -> bool:
        return self.collapse is not None and self.collapse.should_stop

    def _watch(self, record: dict[str, Any], step_records: list[dict[str, Any]]) -> None:
        """The collapse alarm and the best checkpoint / early stop of one epoch's record
        (:func:`~tripletlab.train.epoch_watch.watch_epoch`); ``best.pt`` holds the record."""
        watch_epoch(
            record,
            step_records,
            collapse=self.collapse,
            stopper=self.stopper,
            warn=self.progress.warn,
            save_best=lambda best: self._save_with_record(self.BEST_CHECKPOINT, best),
        )
