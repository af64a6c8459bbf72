"""Row-wise partial selection: the k smallest entries of each row of a distance block, sorted.

Every entry j of a row is ranked by the composite int64 key
``(bits of max(value, +0.0)) << 31 | j``: non-negative IEEE floats order like their bit
patterns, so the keys order by distance and then by column index, exactly and
deterministically (ties never depend on the chunking or the thread count). Negative values
(rounding noise of the GEMM form, −0.0) have negative int32 patterns, and clamping the
integers at 0 is the same as clamping the distances at +0.0.

On CPU (:func:`smallest_k_keys_cpu`) no row is ever sorted whole, and most of a row is not
even turned into keys. A row's k smallest values lie below a threshold estimated from a
fixed random sample of columns (the sample's order statistic at rank ``s·k/N`` plus five
binomial standard deviations); one vectorised comparison keeps the ~1.2·k candidates under
it, only those become keys, ``numpy.partition`` (introselect) keeps k of them and only those
k are sorted. When a row has fewer than k candidates (the estimate was low: rare, and
certain only for adversarial inputs) the row falls back to selecting among all its keys, so
the result is always exact. numpy releases the GIL in all of it, so rows can be processed
by several Python threads at once.

On other devices (:func:`smallest_k_keys_torch`), ``torch.topk`` on the full key block.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

INDEX_BITS = 31  # non-negative float32 bit patterns fit in 31 bits; indices take the other 31
_SAMPLE_COLUMNS = 2048  # columns whose order statistics estimate each row's threshold
_SAFETY_SIGMAS = 5.0  # threshold = expected sample rank of the k-th value + 5 std. devs
_SAFETY_SLACK = 5  # ...+ 5 ranks, for tiny k where the normal approximation is poor
_FILTER_MAX_FRACTION = 0.5  # above this k/N, filtering saves little: select among all keys


def threshold_sample(n_columns: int, k: int, seed: int = 0) -> tuple[np.ndarray, int] | None:
    """Random sample columns and the sample rank whose value bounds the k-th smallest.

    With p = k/N and s sample columns, the number of sampled entries below a row's k-th
    smallest value is (at most) binomial(s, p); rank ⌈s·p + 5·√(s·p·(1−p)) + 5⌉ exceeds it
    except with probability < 1e-6, and a miss only costs that row a full selection.
    Returns None when filtering would not pay (k/N > 0.5 or N small).

    Example:
        >>> columns, rank = threshold_sample(70_000, 7_000)
        >>> len(columns), rank
        (2048, 278)
        >>> threshold_sample(100, 60) is None
        True
    """
    if n_columns <= _SAMPLE_COLUMNS or k > _FILTER_MAX_FRACTION * n_columns:
        return None
    s = _SAMPLE_COLUMNS
    p = k / n_columns
    rank = math.ceil(s * p + _SAFETY_SIGMAS * math.sqrt(s * p * (1 - p)) + _SAFETY_SLACK)
    if rank >= s:
        return None
    rng = np.random.default_rng(seed)
    columns = np.sort(rng.choice(n_columns, s, replace=False))
    return columns, rank


def smallest_k_keys_cpu(
    block: Tensor, k: int, sample: tuple[np.ndarray, int] | None, out: np.ndarray
) -> np.ndarray:
    """Sorted keys of the k smallest entries of each row of a float32 CPU block.

    Args:
        block: (C, N) float32 CPU tensor (contiguous); excluded entries hold ``+inf``.
        k: entries kept per row, 1 ≤ k ≤ N.
        sample: :func:`threshold_sample`'s result for (N, k), or None to select among all
            keys of every row.
        out: (≥C, k) int64 array the keys are written into.

    Returns:
        ``out[:C]``: per row, the k smallest keys in ascending order.

    Example:
        >>> block = torch.tensor([[3.0, 1.0, 2.0], [0.5, 0.5, -0.0]])
        >>> keys = smallest_k_keys_cpu(block, 2, None, np.empty((2, 2), dtype=np.int64))
        >>> (keys & (2**31 - 1)).tolist()  # column indices; ties by index, -0.0 as +0.0
        [[1, 2], [2, 0]]
    """
    values = block.numpy()
    bits = values.view(np.int32)
    n_rows, n = values.shape
    thresholds = None
    if sample is not None:
        columns, rank = sample
        sampled = values[:, columns]
        sampled.partition(rank, axis=1)
        # max(·, 0): every clamped-to-zero entry must be a candidate, whatever its sign bit.
        thresholds = np.maximum(sampled[:, rank], 0)
    all_columns = np.arange(n, dtype=np.int64)
    for row in range(n_rows):
        candidates = None
        if thresholds is not None:
            candidates = np.flatnonzero(values[row] <= thresholds[row])
            if len(candidates) < k:
                candidates = None  # the estimate was low: fall back to the whole row
        if candidates is None:
            candidates, row_bits = all_columns, bits[row]
        else:
            row_bits = bits[row, candidates]
        keys = np.maximum(row_bits, 0).astype(np.int64)
        np.left_shift(keys, INDEX_BITS, out=keys)
        np.bitwise_or(keys, candidates, out=keys)
        if len(keys) > k:
            keys.partition(k - 1)
        out[row] = np.sort(keys[:k])
    return out[:n_rows]


def smallest_k_keys_torch(block: Tensor, k: int, keys: Tensor) -> Tensor:
    """Sorted k smallest int64 keys per row with ``torch.topk`` (any device; used on CUDA).

    ``keys`` is a (C, N) int64 scratch buffer on the block's device.

    Example:
        >>> block = torch.tensor([[3.0, 1.0, 2.0]])
        >>> top = smallest_k_keys_torch(block, 2, torch.empty(1, 3, dtype=torch.long))
        >>> (top & (2**31 - 1)).tolist()
        [[1, 2]]
    """
    columns = torch.arange(block.shape[1], device=block.device)
    keys.copy_(block.view(torch.int32))
    keys.clamp_min_(0).bitwise_left_shift_(INDEX_BITS).bitwise_or_(columns)
    return torch.topk(keys, k, dim=1, largest=False, sorted=True).values


def split_keys(keys: Tensor) -> tuple[Tensor, Tensor]:
    """(float32 distances, int64 column indices) of int64 keys.

    Example:
        >>> split_keys(torch.tensor([(1065353216 << 31) | 7]))
        (tensor([1.]), tensor([7]))
    """
    indices = keys.bitwise_and((1 << INDEX_BITS) - 1)
    distances = keys.bitwise_right_shift(INDEX_BITS).to(torch.int32).view(torch.float32)
    return distances, indices


def smallest_k_by_sort(block: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Row-wise k smallest by a stable sort (float64, or more than 2³¹ references).

    Example:
        >>> smallest_k_by_sort(torch.tensor([[2.0, -0.0, 2.0]], dtype=torch.float64), 2)[1]
        tensor([[1, 0]])
    """
    values, idx = torch.sort(block.clamp_min_(0), dim=1, stable=True)
    return values[:, :k].contiguous(), idx[:, :k].contiguous()
