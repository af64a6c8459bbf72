"""Training inputs that stay on disk: a dataset read by index, one batch at a time.

The :class:`~tripletlab.train.trainer.Trainer` (and the offline-mining trainer) index their
inputs with a tensor of sample indices per step, slice them for embedding passes, and move
them with ``.to(device)``. :class:`LazyInputs` gives exactly that interface over any
map-style dataset whose ``dataset[i]`` is ``(x_i, y_i)`` — an image folder that decodes
files lazily, a memory-mapped array — so only the samples of the current batch are ever in
memory; the labels (needed up front for P×K sampling and mining) come from the dataset's
``labels`` / ``targets`` attribute, or one pass over it.

:func:`embed_dataset` embeds a whole dataset chunk by chunk through a
:class:`torch.utils.data.DataLoader` (with worker processes when asked) — the pass offline
mining makes before each epoch — holding only the (N, D) embeddings, never the inputs.

Example:
    >>> import torch
    >>> class Squares(torch.utils.data.Dataset):
    ...     labels = torch.tensor([0, 0, 1, 1])
    ...     def __len__(self): return 4
    ...     def __getitem__(self, i): return torch.full((2,), float(i * i)), self.labels[i]
    >>> inputs = LazyInputs(Squares())
    >>> inputs[torch.tensor([3, 1])].tolist()
    [[9.0, 9.0], [1.0, 1.0]]
    >>> embeddings, labels = embed_dataset(lambda x: x[:, :1], Squares(), batch_size=3)
    >>> embeddings.squeeze(1).tolist(), labels.tolist()
    ([0.0, 1.0, 4.0, 9.0], [0, 0, 1, 1])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from tripletlab.errors import DataError

__all__ = ["LazyInputs", "Miner", "dataset_labels", "embed_dataset", "mine_dataset"]


class Miner(Protocol):
    """What :func:`mine_dataset` needs of a miner (``OfflineMiner`` is one)."""

    def mine(self, embeddings: Tensor, labels: Tensor, seed: int = 0) -> tuple[Tensor, ...]:
        """``(a, p, n)`` index tensors for these embeddings."""
        ...


#: Samples per chunk of the embedding pass, when none is given.
DEFAULT_EMBED_BATCH = 1024


def _sample(item: Any) -> tuple[Tensor, Any]:
    if isinstance(item, (tuple, list)) and len(item) >= 2:
        return torch.as_tensor(item[0]), item[1]
    raise DataError(f"dataset items must be (input, label) pairs; got {type(item).__name__}")


def dataset_labels(dataset: Any) -> Tensor:
    """The (N,) int64 labels of ``dataset``: its ``labels`` or ``targets`` attribute, else
    read item by item (which decodes every input once).

    Raises:
        DataError: the labels are not integers or their number differs from ``len(dataset)``.
    """
    for name in ("labels", "targets"):
        value = getattr(dataset, name, None)
        if value is not None:
            labels = torch.as_tensor(value)
            break
    else:
        labels = torch.as_tensor([int(_sample(dataset[i])[1]) for i in range(len(dataset))])
    if labels.dim() != 1 or len(labels) != len(dataset):
        raise DataError(
            f"dataset has {len(dataset)} samples but labels of shape {tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise DataError(f"dataset labels must be integers; got dtype {labels.dtype}")
    return labels.long()


class LazyInputs:
    """A tensor-like view of a map-style dataset's inputs, read only where indexed.

    Supports what the trainers use: ``len()``, ``.to(device)`` (remembered, applied to each
    batch), indexing by an int64 index tensor / list (a batch: the samples stacked, on the
    device) and by a slice (a chunk of the embedding pass).

    Args:
        dataset: ``dataset[i]`` → ``(x_i, y_i)`` with tensors ``x_i`` of one shape.
        device: where returned batches go (``.to`` changes it).
    """

    def __init__(self, dataset: Dataset, device: str | torch.device = "cpu") -> None:
        self.dataset = dataset
        self.device = torch.device(device)
        self._length = len(dataset)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self._length

    def to(self, device: str | torch.device) -> LazyInputs:
        """The same view, returning batches on ``device`` (no data moves now)."""
        return LazyInputs(self.dataset, device)

    def _rows(self, indices: Sequence[int]) -> Tensor:
        if not indices:
            first = _sample(self.dataset[0])[0] if self._length else torch.empty(0)
            return torch.empty(0, *first.shape, device=self.device)
        rows = [_sample(self.dataset[int(i)])[0] for i in indices]
        try:
            batch = torch.stack(rows)
        except RuntimeError as exc:
            shapes = sorted({tuple(r.shape) for r in rows})
            raise DataError(f"dataset inputs differ in shape: {shapes[:3]} ({exc})") from None
        return batch.to(self.device)

    def __getitem__(self, index: Tensor | Sequence[int] | slice | int) -> Tensor:
        if isinstance(index, slice):
            return self._rows(range(*index.indices(self._length)))
        if isinstance(index, int):
            return self._rows([index])[0]
        flat = torch.as_tensor(index).reshape(-1).tolist()
        return self._rows(flat)


def embed_dataset(
    forward: Callable[[Tensor], Tensor],
    data: Dataset | Iterable[Any],
    *,
    batch_size: int = DEFAULT_EMBED_BATCH,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
) -> tuple[Tensor, Tensor]:
    """Embeddings (N, D) and labels (N,) of a dataset, computed chunk by chunk, on the CPU.

    Args:
        forward: maps an input batch (on ``device``) to embeddings; called under
            ``torch.no_grad()`` (put the model in eval mode first, as ``Trainer.embed`` does).
        data: a map-style dataset of ``(x, y)`` items (read in order through a DataLoader
            of ``batch_size`` and ``num_workers``), or any iterable of ``(x_batch, y_batch)``
            batches (a DataLoader you built: its order is kept).
        batch_size, num_workers: of the DataLoader built for a dataset.
        device: where the batches are embedded.

    Returns:
        ``(embeddings, labels)`` in the data's order; ``(0, 0)`` and ``(0,)`` when empty.
    """
    if batch_size < 1 or num_workers < 0:
        raise ValueError("batch_size must be >= 1 and num_workers >= 0")
    batches: Iterable[Any]
    if isinstance(data, Dataset):
        batches = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    else:
        batches = data
    chunks: list[Tensor] = []
    label_chunks: list[Tensor] = []
    with torch.no_grad():
        for batch in batches:
            inputs, labels = _sample(batch)
            chunks.append(forward(inputs.to(device)).detach().cpu())
            label_chunks.append(torch.as_tensor(labels).reshape(-1).cpu().long())
    if not chunks:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
    return torch.cat(chunks), torch.cat(label_chunks)


def mine_dataset(
    forward: Any,
    data: Any,
    miner: Miner,
    *,
    seed: int = 0,
    batch_size: int = 1024,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
) -> tuple[tuple[Tensor, ...], Tensor]:
    """Embed a dataset that streams (chunk by chunk) and mine its triplets.

    Args:
        forward: input batch → embeddings (e.g. the model in eval mode).
        data: a map-style dataset of ``(x, y)`` items or an iterable of ``(x, y)`` batches
            (see :func:`~tripletlab.train.streaming.embed_dataset`).
        miner: any object with ``mine(embeddings, labels, seed)`` → ``(a, p, n)``, e.g.
            :class:`~tripletlab.train.offline_mining.OfflineMiner`.
        seed: the mining seed.
        batch_size, device, num_workers: of the embedding pass.

    Returns:
        ``((a, p, n), labels)``: the mined index triplets and the (N,) labels read.

    Example:
        >>> from tripletlab.train.offline_mining import OfflineMiner
        >>> data = [(torch.tensor([[0.0], [0.1], [0.15]]), torch.tensor([0, 0, 1])),
        ...         (torch.tensor([[1.0], [1.1]]), torch.tensor([1, 1]))]  # two batches
        >>> (a, p, n), y = mine_dataset(lambda x: x, data, OfflineMiner("hard", margin=0.5,
        ...                             candidates=4))
        >>> torch.stack([a, p, n], 1).tolist(), y.tolist()
        ([[1, 0, 2], [2, 4, 1]], [0, 0, 1, 1, 1])
    """
    embeddings, labels = embed_dataset(
        forward, data, batch_size=batch_size, device=device, num_workers=num_workers
    )
    return miner.mine(embeddings, labels, seed=seed), labels
