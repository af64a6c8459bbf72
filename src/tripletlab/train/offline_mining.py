"""Offline triplet mining: before an epoch, embed the training set and select triplets.

Online mining (the batch losses) only sees the negatives of one batch. Offline mining looks at
the whole training set: it embeds every sample with the current model and, for each anchor,
picks positives from its class and negatives from its nearest neighbours in the whole set —
through a kNN backend (:class:`~tripletlab.evaluate.knn.TorchKNN`, exact; or
:class:`~tripletlab.evaluate.knn_faiss.FaissKNN` for millions of samples). The epoch then
trains on those explicit triplets (:func:`~tripletlab.functional.triplet_margin_loss`).

Selection, for anchor a, with ``positives_per_anchor`` random positives p (its class, p ≠ a)
and the ``candidates`` nearest neighbours of a with another label as negatives n:

* ``"hard"``      — d_an ≤ d_ap; hardest first (smallest d_an − d_ap);
* ``"semi_hard"`` — d_ap < d_an ≤ d_ap + m; FaceNet's choice first (smallest d_an − d_ap, i.e.
  the nearest negative beyond the positive);
* ``"all"``       — uniformly random valid triplets (random positive, random negative drawn
  from the whole set, not only the neighbours).

At most ``triplets_per_anchor`` triplets per anchor (the budget); an anchor without a
qualifying candidate contributes none. The hard and semi-hard sets are exact for the negatives
within the ``candidates`` nearest neighbours of each anchor; negatives further away are not
considered (raise ``candidates`` when many anchors come back empty).

Data that streams: give the trainer :class:`~tripletlab.train.streaming.LazyInputs` over a
map-style dataset instead of an input tensor; the embedding pass before each offline epoch
then reads the dataset chunk by chunk (through a DataLoader with ``embed_workers`` worker
processes) and each step reads only its batch's samples.
:func:`~tripletlab.train.streaming.mine_dataset` does one such pass and the mining, for use
outside the trainer.

Memory is bounded for any N: anchors are processed ``chunk_size`` at a time (the kNN backend
bounds its own distance blocks), the temporaries per chunk are (chunk, positives, candidates),
and only the selected triplets (≤ N × budget) are kept.

Reference: Schroff, Kalenichenko, Philbin, "FaceNet", CVPR 2015 (offline vs online triplet
selection, semi-hard negatives); Hermans et al. 2017 (the case for online batch-hard).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from tripletlab.errors import InvalidArgumentError
from tripletlab.evaluate.knn import KNNBackend, TorchKNN, iter_knn
from tripletlab.functional.distances import METRICS, row_distance
from tripletlab.train.mined_batches import MinedTripletLoss, TripletBatches
from tripletlab.train.streaming import LazyInputs, embed_dataset
from tripletlab.train.trainer import Trainer
from tripletlab.validation import (
    check_choice,
    check_embeddings,
    check_labels,
    check_nonnegative,
    check_positive_int,
)

STRATEGIES: tuple[str, ...] = ("hard", "semi_hard", "all")
SCHEDULES: tuple[str, ...] = ("online", "offline", "alternate")

__all__ = [
    "SCHEDULES",
    "STRATEGIES",
    "OfflineMiner",
    "OfflineMiningTrainer",
    "TripletBatches",
    "mine_offline_triplets",
]


class _ClassIndex:
    """Labels sorted once: each sample's class block, for O(1) random positives/negatives."""

    def __init__(self, labels: Tensor) -> None:
        self.order = torch.argsort(labels, stable=True)
        sorted_labels = labels[self.order]
        self.start = torch.searchsorted(sorted_labels, labels, right=False)
        self.count = torch.searchsorted(sorted_labels, labels, right=True) - self.start
        self.rank = torch.empty_like(self.order)
        self.rank[self.order] = torch.arange(len(labels))
        self.n = len(labels)

    def random_positives(self, anchors: Tensor, m: int, gen: torch.Generator) -> Tensor:
        """(A, m) random positives (other members of the class; −1 where there is none)."""
        others = (self.count[anchors] - 1)[:, None]
        u = torch.rand(len(anchors), m, generator=gen)
        offset = (u * others.clamp_min(1)).long().clamp_max((others - 1).clamp_min(0))
        pos = self.start[anchors][:, None] + offset
        pos = pos + (pos >= self.rank[anchors][:, None]).long()  # skip the anchor itself
        return torch.where(others > 0, self.order[pos.clamp_max(self.n - 1)], -1)

    def random_negatives(self, anchors: Tensor, m: int, gen: torch.Generator) -> Tensor:
        """(A, m) uniform random samples of other classes (−1 where there is none)."""
        outside = (self.n - self.count[anchors])[:, None]
        u = torch.rand(len(anchors), m, generator=gen)
        r = (u * outside.clamp_min(1)).long().clamp_max((outside - 1).clamp_min(0))
        start = self.start[anchors][:, None]
        pos = torch.where(r < start, r, r + self.count[anchors][:, None])
        return torch.where(outside > 0, self.order[pos.clamp_max(self.n - 1)], -1)


def mine_offline_triplets(
    embeddings: Tensor,
    labels: Tensor,
    strategy: str = "semi_hard",
    *,
    margin: float = 0.2,
    metric: str = "sqeuclidean",
    triplets_per_anchor: int = 1,
    positives_per_anchor: int = 4,
    candidates: int = 32,
    backend: KNNBackend | None = None,
    chunk_size: int = 16384,
    seed: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Triplets of the whole training set, selected through a kNN backend.

    Args:
        embeddings: (N, D) embeddings of the training set (detached; made by the model).
        labels: (N,) integer labels.
        strategy: ``"hard"``, ``"semi_hard"`` or ``"all"`` (see the module docstring).
        margin: m ≥ 0 of the definitions.
        metric: ``"sqeuclidean"``, ``"euclidean"`` or ``"cosine"``.
        triplets_per_anchor: the budget, at most this many triplets per anchor.
        positives_per_anchor: random positives drawn per anchor (with replacement).
        candidates: nearest neighbours searched per anchor for negatives (hard/semi-hard).
        backend: kNN backend (default: exact :class:`TorchKNN`).
        chunk_size: anchors per chunk (bounds the memory of one step).
        seed: seed of the random positives/negatives; the result is a function of the
            inputs and the seed (and of the backend, for approximate indexes).

    Returns:
        ``(a, p, n)``: three (T,) int64 tensors of dataset indices, T ≤ N·budget, ordered by
        anchor.

    Example:
        >>> x = torch.tensor([[0.0], [0.1], [0.15], [1.0], [1.1]])
        >>> a, p, n = mine_offline_triplets(x, torch.tensor([0, 0, 1, 1, 1]), "hard",
        ...                                 margin=0.5, candidates=4)
        >>> torch.stack([a, p, n], 1).tolist()  # (a, p, n) with d_an ≤ d_ap
        [[1, 0, 2], [2, 4, 1]]
    """
    check_choice(strategy, "strategy", STRATEGIES)
    check_choice(metric, "metric", METRICS)
    margin = check_nonnegative(margin, "margin")
    budget = check_positive_int(triplets_per_anchor, "triplets_per_anchor")
    n_pos = check_positive_int(positives_per_anchor, "positives_per_anchor")
    n_cand = check_positive_int(candidates, "candidates")
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    embeddings = check_embeddings(embeddings, "embeddings").detach()
    labels = check_labels(labels, len(embeddings)).detach().to(embeddings.device).long()
    n = len(embeddings)
    empty = torch.empty(0, dtype=torch.long)
    if n < 2:
        return empty, empty, empty
    classes = _ClassIndex(labels.cpu())
    gen = torch.Generator().manual_seed(int(seed))
    parts: list[Tensor] = []
    if strategy == "all":
        for start in range(0, n, chunk_size):
            anchors = torch.arange(start, min(n, start + chunk_size))
            pos = classes.random_positives(anchors, budget, gen)
            neg = classes.random_negatives(anchors, budget, gen)
            ok = (pos >= 0) & (neg >= 0)
            a = anchors[:, None].expand_as(pos)
            parts.append(torch.stack([a[ok], pos[ok], neg[ok]], 1))
    else:
        backend = backend or TorchKNN()
        n_cand = min(n_cand, n - 1)
        cpu, cpu_labels = embeddings.cpu(), labels.cpu()
        # The backend searches in chunks its own memory budget allows (TorchKNN: a distance
        # block of ``memory_budget_bytes``); the selection runs on ``chunk_size`` anchors.
        rows = chunk_size
        if hasattr(backend, "chunk_rows"):
            rows = max(1, min(rows, backend.chunk_rows(n, n_cand)))
        pending: list[tuple[int, Tensor, Tensor]] = []

        def select(pending: list[tuple[int, Tensor, Tensor]]) -> Tensor:
            start = pending[0][0]
            indices = torch.cat([p[1] for p in pending])
            distances = torch.cat([p[2] for p in pending])
            anchors = torch.arange(start, start + len(indices))
            return _select_chunk(
                cpu, cpu_labels, classes, anchors, indices, distances, strategy, margin,
                metric, budget, n_pos, gen,
            )  # fmt: skip

        for start, found in iter_knn(backend, embeddings, n_cand, metric=metric, rows=rows):
            pending.append((start, found.indices.cpu(), found.distances.cpu()))
            if sum(len(p[1]) for p in pending) >= chunk_size:
                parts.append(select(pending))
                pending = []
        if pending:
            parts.append(select(pending))
    triplets = torch.cat(parts) if parts else torch.empty(0, 3, dtype=torch.long)
    return triplets[:, 0].clone(), triplets[:, 1].clone(), triplets[:, 2].clone()


def _select_chunk(
    embeddings: Tensor,
    labels: Tensor,
    classes: _ClassIndex,
    anchors: Tensor,
    neighbours: Tensor,
    d_an: Tensor,
    strategy: str,
    margin: float,
    metric: str,
    budget: int,
    n_pos: int,
    gen: torch.Generator,
) -> Tensor:
    """(T, 3) triplets of one chunk of anchors: (A, P) positives × (A, C) candidate negatives,
    scored, the ``budget`` best per anchor kept."""
    a_count, c = neighbours.shape
    pos = classes.random_positives(anchors, n_pos, gen)  # (A, P)
    has_pos = pos >= 0
    safe_pos = pos.clamp_min(0)
    anchor_rows = embeddings[anchors]
    d_ap = row_distance(
        anchor_rows[:, None, :].expand(-1, n_pos, -1).reshape(-1, embeddings.shape[1]),
        embeddings[safe_pos.reshape(-1)],
        metric,
    ).view(a_count, n_pos)
    is_negative = (neighbours >= 0) & (labels[neighbours.clamp_min(0)] != labels[anchors][:, None])
    gap = d_an[:, None, :] - d_ap[:, :, None]  # (A, P, C): d_an − d_ap
    ok = gap <= 0 if strategy == "hard" else (gap > 0) & (gap <= margin)
    ok &= has_pos[:, :, None] & is_negative[:, None, :]
    # a positive drawn twice must not give the same triplet twice: keep its first draw
    dup = torch.zeros_like(has_pos)
    for j in range(1, n_pos):  # n_pos is a small constant, not a batch dimension
        dup[:, j] = (pos[:, :j] == pos[:, j : j + 1]).any(1)
    ok &= ~dup[:, :, None]
    score = torch.where(ok, gap, torch.full_like(gap, float("inf"))).view(a_count, -1)
    take = min(budget, score.shape[1])
    best, flat = torch.topk(score, take, dim=1, largest=False, sorted=True)
    keep = torch.isfinite(best)
    p_slot, c_slot = flat // c, flat % c
    a = anchors[:, None].expand_as(flat)
    p = pos.gather(1, p_slot)
    n = neighbours.gather(1, c_slot)
    return torch.stack([a[keep], p[keep], n[keep]], 1)


# --- training on mined triplets ------------------------------------------------------------


class OfflineMiner:
    """The settings of offline mining, applied to a set of embeddings by :meth:`mine`.

    Args: as :func:`mine_offline_triplets` (``strategy``, ``margin``, ``metric``,
    ``triplets_per_anchor``, ``positives_per_anchor``, ``candidates``, ``backend``,
    ``chunk_size``); the seed is given per call (the epoch's).
    """

    def __init__(
        self,
        strategy: str = "semi_hard",
        *,
        margin: float = 0.2,
        metric: str = "sqeuclidean",
        triplets_per_anchor: int = 1,
        positives_per_anchor: int = 4,
        candidates: int = 32,
        backend: KNNBackend | None = None,
        chunk_size: int = 16384,
    ) -> None:
        self.strategy = check_choice(strategy, "strategy", STRATEGIES)
        self.margin = check_nonnegative(margin, "margin")
        self.metric = check_choice(metric, "metric", METRICS)
        self.triplets_per_anchor = check_positive_int(triplets_per_anchor, "triplets_per_anchor")
        self.positives_per_anchor = check_positive_int(positives_per_anchor, "positives_per_anchor")
        self.candidates = check_positive_int(candidates, "candidates")
        self.backend = backend
        self.chunk_size = check_positive_int(chunk_size, "chunk_size")

    def mine(
        self, embeddings: Tensor, labels: Tensor, seed: int = 0
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(a, p, n)`` index tensors for these embeddings."""
        return mine_offline_triplets(
            embeddings,
            labels,
            self.strategy,
            margin=self.margin,
            metric=self.metric,
            triplets_per_anchor=self.triplets_per_anchor,
            positives_per_anchor=self.positives_per_anchor,
            candidates=self.candidates,
            backend=self.backend,
            chunk_size=self.chunk_size,
            seed=seed,
        )


class OfflineMiningTrainer(Trainer):
    """A :class:`Trainer` whose epochs use offline-mined triplets, online mining, or both.

    ``schedule``: ``"online"`` (the plain trainer), ``"offline"`` (every epoch embeds the
    training set, mines with ``miner`` and trains on the triplets, ``batch_triplets`` per
    step), or ``"alternate"`` (offline on odd epochs 1, 3, …, online P×K batch mining with the
    trainer's loss on even ones). Everything else — logging, validation, checkpoints, resume —
    is the trainer's. Offline epochs log ``offline_triplets`` (the number mined) and
    ``offline_mining_seconds``.

    Args:
        *args, **kwargs: those of :class:`Trainer`.
        miner: an :class:`OfflineMiner` (default: semi-hard, margin 0.2).
        schedule: see above.
        batch_triplets: triplets per optimiser step in offline epochs.
        embed_batch_size: batch size of the embedding pass before mining.
        embed_workers: DataLoader worker processes of that pass when the inputs are
            :class:`~tripletlab.train.streaming.LazyInputs` (a dataset that streams).
    """

    def __init__(
        self,
        *args: Any,
        miner: OfflineMiner | None = None,
        schedule: str = "alternate",
        batch_triplets: int = 128,
        embed_batch_size: int = 1024,
        embed_workers: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(embed_workers, bool) or embed_workers < 0:
            raise InvalidArgumentError(f"embed_workers must be >= 0; got {embed_workers!r}")
        self.embed_workers = int(embed_workers)
        self.miner = miner or OfflineMiner()
        self.schedule = check_choice(schedule, "schedule", SCHEDULES)
        self.batch_triplets = check_positive_int(batch_triplets, "batch_triplets")
        self.embed_batch_size = check_positive_int(embed_batch_size, "embed_batch_size")

    def _embed_for_mining(self, inputs: Any) -> Tensor:
        if not isinstance(inputs, LazyInputs) or self.embed_workers == 0:
            return self.embed(inputs, self.embed_batch_size)  # tensors, or lazy in-process reads
        was_training = self.model.training
        self.model.eval()
        try:
            return embed_dataset(
                self._forward,
                inputs.dataset,
                batch_size=self.embed_batch_size,
                device=self.device,
                num_workers=self.embed_workers,
            )[0]
        finally:
            self.model.train(was_training)

    def is_offline_epoch(self, epoch: int) -> bool:
        """Whether (1-based) ``epoch`` trains on offline-mined triplets."""
        if self.schedule == "alternate":
            return epoch % 2 == 1
        return self.schedule == "offline"

    def _run_epoch(
        self,
        inputs: Tensor | Dataset,
        labels: Tensor,
        sampler: Any,
        steps_per_epoch: int | None,
        epochs: int,
    ) -> dict[str, Any]:
        upcoming = self.epoch + 1
        if not self.is_offline_epoch(upcoming):
            return super()._run_epoch(inputs, labels, sampler, steps_per_epoch, epochs)
        import time

        started = time.perf_counter()
        embeddings = self._embed_for_mining(inputs)
        triplets = self.miner.mine(embeddings, labels.cpu(), seed=self.seed * 7919 + upcoming)
        mining_seconds = time.perf_counter() - started
        batches = TripletBatches(
            triplets,
            self.batch_triplets,
            margin=self.miner.margin,
            metric=self.miner.metric,
            seed=self.seed,
            epoch=upcoming,
        )
        online_loss = self.loss
        self.loss = MinedTripletLoss(batches)
        try:
            record = super()._run_epoch(inputs, labels, batches, steps_per_epoch, epochs)
        finally:
            self.loss = online_loss
        record["offline_triplets"] = len(batches.triplets)
        record["offline_mining_seconds"] = mining_seconds
        return record
