"""The one loss protocol of tripletlab's batch losses, and an adapter for plain functions.

Every batch loss module is called as ``loss(embeddings, labels, *, return_stats=False)``:
it returns the 0-dim loss, or ``(loss, stats)`` when ``return_stats=True``, where ``stats``
is a dataclass with an ``as_dict()`` method (:class:`~tripletlab.functional.TripletStats`
for the triplet losses, :class:`PairStats`-like records for pair losses). The trainer calls
every loss this way; a plain function ``f(embeddings, labels) -> loss`` is adapted with
:func:`as_batch_loss` (its stats are empty).

Example:
    >>> import torch
    >>> loss = as_batch_loss(lambda e, y: e.pow(2).sum())
    >>> value, stats = loss(torch.ones(2, 3), torch.tensor([0, 1]), return_stats=True)
    >>> float(value), stats.as_dict()
    (6.0, {})
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from torch import Tensor, nn

from tripletlab.errors import ArgumentTypeError

__all__ = ["BatchLoss", "CallableLoss", "LossStats", "NoStats", "as_batch_loss"]


class LossStats(Protocol):
    """What ``loss(..., return_stats=True)`` returns beside the loss: values to log."""

    def as_dict(self) -> dict[str, float]:
        """The statistics as Python floats (reads tensors on the host: call when logging)."""
        ...


@dataclass(frozen=True)
class NoStats:
    """The statistics of a loss that computes none."""

    def as_dict(self) -> dict[str, float]:
        """Always empty."""
        return {}


class BatchLoss(nn.Module):
    """Base class of the losses called as ``loss(embeddings, labels, return_stats=...)``.

    A marker of the protocol (the trainer calls every :class:`BatchLoss` with
    ``return_stats=True``): subclasses implement ``forward(embeddings, labels, ...,
    return_stats=False)`` returning the loss, or ``(loss, stats)`` with a :class:`LossStats`
    dataclass when ``return_stats`` is true; they may take further arguments, e.g.
    ``ref_embeddings``/``ref_labels``.
    """


class CallableLoss(BatchLoss):
    """A plain function ``fn(embeddings, labels, **kwargs) -> loss`` as a :class:`BatchLoss`
    (empty statistics).

    Example:
        >>> import torch
        >>> CallableLoss(lambda e, y: e.sum())(torch.ones(2, 2), torch.tensor([0, 1]))
        tensor(4.)
    """

    def __init__(self, fn: Callable[..., Tensor]) -> None:
        super().__init__()
        if not callable(fn):
            raise ArgumentTypeError(f"loss must be callable; got {type(fn).__name__}")
        self.fn = fn

    def forward(
        self, embeddings: Tensor, labels: Tensor, *, return_stats: bool = False, **kwargs: Any
    ) -> Tensor | tuple[Tensor, LossStats]:
        value = self.fn(embeddings, labels, **kwargs)
        return (value, NoStats()) if return_stats else value

    def extra_repr(self) -> str:
        return f"fn={self.fn!r}"


def as_batch_loss(loss: Callable[..., Any]) -> BatchLoss:
    """``loss`` itself when it is a :class:`BatchLoss`, else the plain function adapted."""
    return loss if isinstance(loss, BatchLoss) else CallableLoss(loss)
