"""Cross-batch memory (XBM): past embeddings as extra positives and negatives.

Embeddings drift slowly once training has warmed up, so the embeddings of the last few
thousand samples are still good stand-ins for the current ones. XBM keeps them in a bounded
FIFO queue (detached: no gradient, no graph kept alive) and mines the current batch's anchors
against them as well, which gives a batch of B anchors the negatives of a batch of
``B + memory_size`` at the cost of one (B, memory_size) distance matrix.

    L = L_batch(x, y) + λ · L_ref(x, y; memory_x, memory_y)

``L_ref`` is the same batch loss with the current batch as anchors and the memory as the
reference set (``ref_embeddings``/``ref_labels`` of the batch losses). The current batch is
enqueued *after* the loss, so the memory never holds the anchors themselves (no self-pairs).

Reference: Wang, Zhang, Huang, Scott, "Cross-Batch Memory for Embedding Learning", CVPR 2020.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from tripletlab.functional._validation import check_embeddings, check_labels, check_nonnegative


def _check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return value


class CrossBatchMemory(nn.Module):
    """A bounded FIFO queue of past embeddings and their labels (no gradient).

    Args:
        size: the most rows kept; older rows are overwritten first.
        embedding_dim: D of the embeddings.
        dtype: storage dtype (default float32).

    The queue is part of ``state_dict()`` (buffers plus the write position), so a resumed
    run continues with the same memory.

    Example:
        >>> memory = CrossBatchMemory(size=3, embedding_dim=2)
        >>> memory.enqueue(torch.ones(2, 2), torch.tensor([0, 1]))
        >>> memory.enqueue(2 * torch.ones(2, 2), torch.tensor([2, 3]))
        >>> emb, labels = memory.contents()
        >>> labels.tolist()  # the oldest row (label 0) was dropped
        [1, 2, 3]
    """

    embeddings: Tensor
    labels: Tensor

    def __init__(self, size: int, embedding_dim: int, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.size = _check_positive_int(size, "size")
        self.embedding_dim = _check_positive_int(embedding_dim, "embedding_dim")
        self.register_buffer("embeddings", torch.zeros(self.size, self.embedding_dim, dtype=dtype))
        self.register_buffer("labels", torch.zeros(self.size, dtype=torch.long))
        self._pointer = 0  # next row to write
        self._count = 0  # rows filled so far (≤ size)

    def extra_repr(self) -> str:
        return f"size={self.size}, embedding_dim={self.embedding_dim}, filled={self._count}"

    def __len__(self) -> int:
        return self._count

    def reset(self) -> None:
        """Empty the memory."""
        self._pointer = 0
        self._count = 0

    @torch.no_grad()
    def enqueue(self, embeddings: Tensor, labels: Tensor) -> None:
        """Append a batch (detached); when full, the oldest rows are overwritten."""
        embeddings = check_embeddings(embeddings, "embeddings")
        labels = check_labels(labels, embeddings.shape[0])
        if embeddings.shape[1] != self.embedding_dim:
            raise ValueError(
                f"embeddings must have dimension {self.embedding_dim}; got {embeddings.shape[1]}"
            )
        n = embeddings.shape[0]
        if n == 0:
            return
        if n > self.size:  # only the newest `size` rows can stay
            embeddings, labels = embeddings[-self.size :], labels[-self.size :]
            self._pointer = (self._pointer + n - self.size) % self.size
            n = self.size
        rows = (self._pointer + torch.arange(n, device=self.embeddings.device)) % self.size
        self.embeddings[rows] = embeddings.detach().to(self.embeddings)
        self.labels[rows] = labels.to(self.labels.device, torch.long)
        self._pointer = (self._pointer + n) % self.size
        self._count = min(self.size, self._count + n)

    def contents(self) -> tuple[Tensor, Tensor]:
        """The filled rows ``(embeddings (n, D), labels (n,))``, oldest first."""
        if self._count < self.size:
            return self.embeddings[: self._count], self.labels[: self._count]
        order = (self._pointer + torch.arange(self.size, device=self.labels.device)) % self.size
        return self.embeddings[order], self.labels[order]

    def get_extra_state(self) -> dict[str, int]:
        return {"pointer": self._pointer, "count": self._count}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self._pointer = int(state["pointer"])
        self._count = int(state["count"])


class XBMLoss(nn.Module):
    """A batch loss plus the same loss against a cross-batch memory (Wang et al. 2020).

    ``L = loss(x, y) + weight · loss(x, y, ref_embeddings=M_x, ref_labels=M_y)``, where
    ``(M_x, M_y)`` are the last ``memory_size`` embeddings seen in training (detached). The
    memory term starts at iteration ``start_iteration`` (XBM's warm-up: early embeddings drift
    too fast to be useful); the batch is enqueued after every training-mode call.

    Args:
        loss: a batch loss taking ``(embeddings, labels, ref_embeddings=…, ref_labels=…)``,
            e.g. :class:`tripletlab.BatchAllTripletLoss` or ``BatchHardTripletLoss``.
        memory_size: rows kept in the memory.
        embedding_dim: D of the embeddings.
        weight: λ ≥ 0 of the memory term.
        start_iteration: training-mode calls before the memory term is used.

    Inputs: ``embeddings`` (B, D), ``labels`` (B,). Returns a 0-dim loss; with
    ``return_stats=True``, ``(loss, stats)`` where ``stats`` are the inner loss's statistics of
    the batch term (``TripletStats`` for the triplet losses: the per-step values the trainer
    logs and the collapse detector reads).

    Example:
        >>> from tripletlab.nn.batch_losses import BatchHardTripletLoss
        >>> xbm = XBMLoss(BatchHardTripletLoss(margin=0.2), memory_size=64, embedding_dim=8)
        >>> x = torch.randn(16, 8, requires_grad=True)
        >>> xbm(x, torch.arange(16) % 4).backward()
        >>> len(xbm.memory)
        16
    """

    def __init__(
        self,
        loss: nn.Module | Callable[..., Any],
        memory_size: int,
        embedding_dim: int,
        weight: float = 1.0,
        start_iteration: int = 0,
    ) -> None:
        super().__init__()
        if not callable(loss):
            raise TypeError(f"loss must be a callable batch loss; got {type(loss).__name__}")
        self.loss = loss
        self.memory = CrossBatchMemory(memory_size, embedding_dim)
        self.weight = check_nonnegative(weight, "weight")
        if isinstance(start_iteration, bool) or not isinstance(start_iteration, int):
            raise ValueError(f"start_iteration must be an int >= 0; got {start_iteration!r}")
        if start_iteration < 0:
            raise ValueError(f"start_iteration must be an int >= 0; got {start_iteration!r}")
        self.start_iteration = start_iteration
        self.iteration = 0

    def extra_repr(self) -> str:
        return f"weight={self.weight}, start_iteration={self.start_iteration}"

    def forward(
        self, embeddings: Tensor, labels: Tensor, return_stats: bool = False
    ) -> Tensor | tuple[Tensor, Any]:
        stats = None
        if return_stats:
            total, stats = self.loss(embeddings, labels, return_stats=True)
        else:
            total = self.loss(embeddings, labels)
        use_memory = self.iteration >= self.start_iteration and len(self.memory) > 0
        if use_memory and self.weight > 0:
            mem_x, mem_y = self.memory.contents()
            mem_x = mem_x.to(embeddings.device)
            mem_y = mem_y.to(labels.device)
            total = total + self.weight * self.loss(
                embeddings, labels, ref_embeddings=mem_x, ref_labels=mem_y
            )
        if self.training:
            self.memory.enqueue(embeddings.detach(), labels)
            self.iteration += 1
        return (total, stats) if return_stats else total

    def get_extra_state(self) -> dict[str, int]:
        return {"iteration": self.iteration}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.iteration = int(state["iteration"])
