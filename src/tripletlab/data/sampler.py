"""P×K batch sampling that covers the dataset: every sample exactly once per epoch.

Batch losses need several samples per class in a batch; the P×K scheme (Hermans et al. 2017)
takes P classes and K samples of each. Unlike samplers that draw classes and samples with
replacement (pytorch-metric-learning's ``MPerClassSampler`` does not cover the dataset, PML
#684), :func:`pk_batches` partitions each epoch:

1. each class's indices are shuffled and cut into ⌈n_c / K⌉ groups of sizes as equal as
   possible (each ≤ K): 9 samples with K = 4 give groups of 3, 3, 3 rather than 4, 4, 1, so
   with K ≥ 3 leftovers never become lone samples without a positive (with K = 2 an odd
   class keeps one group of one; a class with a single sample is always a group of one:
   such a sample serves only as a negative). Groups never exceed K, so batches never
   exceed P·K;
2. batches are built greedily from P *distinct* classes, always those with the most groups
   left (ties broken by a random class order), which keeps P classes per batch for as long
   as possible; a batch therefore holds ≤ P·K samples, fewer when groups are short or when
   fewer than P classes still have groups (the last batches of an epoch);
3. the batch order is shuffled.

With ``drop_last=True`` batches with fewer than P·K samples are dropped (their samples are
not visited that epoch). Everything is drawn from ``numpy.random.default_rng([seed, epoch])``,
so an epoch is reproducible from ``(seed, epoch)`` alone — on any process, which is what a
distributed variant needs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from tripletlab.errors import ArgumentTypeError, InvalidArgumentError


def pk_batches(
    labels: Sequence[int] | np.ndarray | torch.Tensor,
    p: int,
    k: int,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool = False,
) -> list[list[int]]:
    """The batches (lists of dataset indices) of one epoch of P×K sampling.

    Args:
        labels: (N,) integer class of each sample.
        p: classes per batch (≥ 1).
        k: samples per class per batch (≥ 1).
        seed, epoch: the epoch's randomness is a function of these two only.
        drop_last: drop batches with fewer than ``p * k`` samples.

    Returns:
        A list of batches; without ``drop_last`` every index 0..N−1 appears exactly once.

    Example:
        >>> batches = pk_batches([0, 0, 1, 1, 2, 2, 2, 2], p=2, k=2, seed=0)
        >>> sorted(i for b in batches for i in b)
        [0, 1, 2, 3, 4, 5, 6, 7]
    """
    _check_pk(p, k)
    label_array = _as_label_array(labels)
    rng = np.random.default_rng([int(seed), int(epoch)])
    classes, inverse = np.unique(label_array, return_inverse=True)
    groups_by_class: list[list[np.ndarray]] = []
    for c in range(len(classes)):
        members = rng.permutation(np.flatnonzero(inverse == c))
        n_groups = -(-len(members) // k)
        groups_by_class.append(np.array_split(members, n_groups))
    remaining = np.array([len(g) for g in groups_by_class], dtype=np.int64)
    tie_break = rng.permutation(len(classes)).astype(np.int64)
    batches: list[list[int]] = []
    while remaining.any():
        key = np.where(remaining > 0, remaining * len(classes) + tie_break, -1)
        n_pick = min(p, int((remaining > 0).sum()))
        picked = np.argpartition(-key, n_pick - 1)[:n_pick]
        batch = [groups_by_class[c][len(groups_by_class[c]) - remaining[c]] for c in picked]
        remaining[picked] -= 1
        indices = np.concatenate(batch).tolist()
        if not drop_last or len(indices) == p * k:
            batches.append(indices)
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


class PKSampler(Sampler[list[int]]):
    """Batch sampler of P classes × K samples covering every sample once per epoch.

    Use as ``DataLoader(dataset, batch_sampler=PKSampler(labels, p=8, k=4))``; call
    :meth:`set_epoch` before each epoch for a new (reproducible) order. See
    :func:`pk_batches` for how short classes and leftovers are handled.

    Args:
        labels: (N,) integer class of each sample of the dataset.
        p: classes per batch.
        k: samples per class per batch.
        seed: base seed; epoch ``e`` uses ``(seed, e)``.
        drop_last: drop batches with fewer than P·K samples.

    Example:
        >>> sampler = PKSampler([0, 0, 1, 1, 2, 2], p=2, k=2, seed=1)
        >>> sum(len(b) for b in sampler)
        6
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        p: int,
        k: int,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        _check_pk(p, k)
        self.labels = _as_label_array(labels)
        self.p, self.k, self.seed, self.drop_last = p, k, int(seed), bool(drop_last)
        self.epoch = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields."""
        self.epoch = int(epoch)

    def batches(self) -> list[list[int]]:
        """The current epoch's batches (computed once per epoch)."""
        if self._cache is None or self._cache[0] != self.epoch:
            batches = pk_batches(self.labels, self.p, self.k, self.seed, self.epoch, self.drop_last)
            self._cache = (self.epoch, batches)
        return self._cache[1]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches()

    def __len__(self) -> int:
        return len(self.batches())


def _check_pk(p: object, k: object) -> None:
    for name, value in (("p", p), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InvalidArgumentError(f"{name} must be an integer >= 1; got {value!r}")


def _as_label_array(labels: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    array = np.asarray(labels)
    if array.ndim != 1:
        raise InvalidArgumentError(f"labels must be one-dimensional; got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ArgumentTypeError(f"labels must be integers; got dtype {array.dtype}")
    return array
