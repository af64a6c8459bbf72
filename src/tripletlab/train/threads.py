"""How many CPU threads torch uses while a block runs: :func:`torch_threads`.

Small networks gain nothing from more threads, and on a shared CPU extra OpenMP threads
spin-wait for cores: one thread was 5-50× faster than two for the digits MLP on a loaded
2-core machine. The trainer, the estimator and the ``train`` verb run under it.

Example:
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from tripletlab.errors import InvalidArgumentError

__all__ = ["available_cpus", "torch_threads"]


def available_cpus() -> int:
    """The CPU cores this process may run on (its affinity where the OS tells it), at least 1."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(cpus or 1, 1)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (None: leave the setting alone).

    The previous setting comes back when the block ends, raised or not.

    Raises:
        InvalidArgumentError: ``n`` is not in ``1..`` the available cores (OpenBLAS
            segfaults above its build limit rather than refusing, so it is refused here).
    """
    if n is None:
        yield
        return
    cores = available_cpus()
    if not 1 <= n <= cores:
        raise InvalidArgumentError(f"threads must be in 1..{cores} (the CPU cores); got {n}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
