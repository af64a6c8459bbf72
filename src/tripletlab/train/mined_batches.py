"""Training batches of offline-mined triplets and their loss (the loss protocol of
:mod:`tripletlab.nn.loss_base`), used by the offline epochs of
:class:`~tripletlab.train.offline_mining.OfflineMiningTrainer`.

Example:
    >>> import torch
    >>> triplets = (torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([2, 3]))
    >>> batches = TripletBatches(triplets, 2, margin=0.2, metric="sqeuclidean", seed=0, epoch=1)
    >>> index = next(iter(batches))
    >>> index
    [0, 1, 2, 3]
    >>> loss = MinedTripletLoss(batches)
    >>> value, stats = loss(torch.eye(4), torch.tensor([0, 0, 1, 1]), return_stats=True)
    >>> round(float(value), 4), stats.as_dict()  # all distances 2: each loss is the margin
    (0.2, {'active_fraction': 1.0, 'triplets': 2.0})
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import get_args

import torch
from torch import Tensor

from tripletlab.functional.distances import Metric
from tripletlab.functional.triplet import triplet_margin_loss
from tripletlab.nn.loss_base import BatchLoss
from tripletlab.validation import check_choice, check_positive_int

__all__ = ["MinedTripletLoss", "MinedTripletStats", "TripletBatches"]


class TripletBatches:
    """Batches of mined triplets for the trainer: a batch sampler and its loss in one.

    Iterating yields, per step, the *unique* dataset indices of ``batch_triplets`` triplets
    (each sample embedded once per step); :meth:`loss` is then the triplet margin loss of those
    triplets, given the embeddings of that index list. The triplet order is shuffled with
    ``(seed, epoch)``.
    """

    def __init__(
        self,
        triplets: tuple[Tensor, Tensor, Tensor],
        batch_triplets: int,
        *,
        margin: float,
        metric: str,
        seed: int,
        epoch: int,
    ) -> None:
        self.triplets = torch.stack([t.cpu() for t in triplets], 1)
        self.batch_triplets = check_positive_int(batch_triplets, "batch_triplets")
        self.margin = margin
        self.metric: Metric = check_choice(metric, "metric", get_args(Metric))
        gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
        self.order = torch.randperm(len(self.triplets), generator=gen)
        self._local: Tensor | None = None

    def set_epoch(self, epoch: int) -> None:
        """The batches are mined for one epoch; nothing to do."""

    def __len__(self) -> int:
        return -(-len(self.triplets) // self.batch_triplets)

    def __iter__(self) -> Iterator[list[int]]:
        for start in range(0, len(self.triplets), self.batch_triplets):
            chunk = self.triplets[self.order[start : start + self.batch_triplets]]
            unique, local = torch.unique(chunk, return_inverse=True)
            self._local = local  # (T, 3) positions in the yielded index list
            yield unique.tolist()

    def loss(
        self, embeddings: Tensor, labels: Tensor, return_stats: bool = False
    ) -> Tensor | tuple[Tensor, MinedTripletStats]:
        """Triplet margin loss (mean) of the current batch's triplets."""
        if self._local is None:
            raise RuntimeError("TripletBatches.loss is called for the batch just yielded")
        local = self._local.to(embeddings.device)
        value = triplet_margin_loss(
            embeddings[local[:, 0]],
            embeddings[local[:, 1]],
            embeddings[local[:, 2]],
            margin=self.margin,
            metric=self.metric,
            reduction="none",
        )
        mean = value.mean() if value.numel() else embeddings.sum() * 0
        if not return_stats:
            return mean
        active = (value.detach() > 0).float().mean() if value.numel() else mean.detach()
        return mean, MinedTripletStats(active, torch.tensor(float(len(local))))


@dataclass(frozen=True)
class MinedTripletStats:
    """Statistics of one step on offline-mined triplets (0-dim tensors)."""

    active_fraction: Tensor
    triplets: Tensor

    def as_dict(self) -> dict[str, float]:
        """Both fields as Python floats."""
        return {"active_fraction": float(self.active_fraction), "triplets": float(self.triplets)}


class MinedTripletLoss(BatchLoss):
    """The loss protocol over :meth:`TripletBatches.loss` (the batch just yielded)."""

    def __init__(self, batches: TripletBatches) -> None:
        super().__init__()
        self.batches = batches

    def forward(
        self, embeddings: Tensor, labels: Tensor, return_stats: bool = False
    ) -> Tensor | tuple[Tensor, MinedTripletStats]:
        return self.batches.loss(embeddings, labels, return_stats=return_stats)
