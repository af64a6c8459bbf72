"""DataLoaders for datasets that are read batch by batch (streaming image folders).

:func:`make_loader` builds the DataLoader (worker processes, memory pinned when the batches
go to a CUDA device, so the copy can overlap compute); :func:`device_batches` moves its
batches to the device and turns a :class:`~tripletlab.errors.TripletlabError` raised inside
a worker process — which torch re-raises with the worker's whole traceback in the message —
back into the one-line error the CLI prints.

Example:
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> data = TensorDataset(torch.arange(6.0).reshape(6, 1), torch.arange(6))
    >>> loader = make_loader(data, workers=0, device=torch.device("cpu"), batch_size=4)
    >>> [tuple(x.shape) for x, _ in device_batches(loader, torch.device("cpu"))]
    [(4, 1), (2, 1)]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from tripletlab.errors import TripletlabError

__all__ = ["device_batches", "make_loader"]


def make_loader(
    dataset: Dataset, *, workers: int, device: torch.device, **options: Any
) -> DataLoader:
    """A DataLoader over ``dataset`` with ``workers`` processes (0: in this process).

    ``options`` go to ``DataLoader`` (``batch_sampler=`` a P×K sampler for training,
    ``batch_size=`` for embedding). Workers are not kept between epochs: the P×K sampler
    makes a new epoch order and the decode workers hold no state worth keeping.
    """
    return DataLoader(dataset, num_workers=workers, pin_memory=device.type == "cuda", **options)


def device_batches(loader: DataLoader, device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
    """``(inputs, labels)`` batches of ``loader`` on ``device``; worker errors in one line."""
    iterator = iter(loader)
    while True:
        try:
            inputs, labels = next(iterator)
        except StopIteration:
            return
        except TripletlabError as error:
            raise type(error)(_last_line(str(error))) from None
        yield inputs.to(device, non_blocking=True), labels.to(device, non_blocking=True)


def _last_line(message: str) -> str:
    """The original message of an exception torch wrapped as "Caught X in DataLoader worker
    process N. Original Traceback …  module.X: message"."""
    lines = [line for line in message.strip().splitlines() if line.strip()]
    if len(lines) <= 1:
        return message
    return lines[-1].split(": ", 1)[-1]
