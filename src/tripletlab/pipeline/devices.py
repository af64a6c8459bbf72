"""The device a run trains on, checked before anything starts (:func:`resolve_device`), and
the CPU threads it may use (:func:`check_threads`).

``train.device`` names ``auto`` (CUDA if present, else MPS, else the CPU), ``cpu``,
``cuda``, ``cuda:N`` or ``mps`` (the config refuses other names). A device this machine
lacks — CUDA not compiled into torch, no GPU, a GPU index out of range — is a
:class:`~tripletlab.errors.ConfigError` naming the key, not an error deep in torch.

Example:
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> check_threads(1)
    1
"""

from __future__ import annotations

import torch

from tripletlab.errors import ConfigError
from tripletlab.train.threads import available_cpus

__all__ = ["check_threads", "resolve_device"]


def check_threads(threads: int) -> int:
    """``threads`` when it is at most the available cores; ConfigError otherwise (OpenBLAS
    crashes on thread counts above its build limit instead of refusing them)."""
    cpus = available_cpus()
    if threads > cpus:
        raise ConfigError(
            f"config key 'train.threads': {threads} threads asked, this machine gives the "
            f"process {cpus} CPU cores"
        )
    return threads


def resolve_device(name: str) -> torch.device:
    """The torch device ``name`` stands for on this machine
    (:func:`tripletlab.train.devices.resolve_device`), its error naming the config key."""
    from tripletlab.train.devices import resolve_device as resolve

    try:
        return resolve(name)
    except ConfigError as exc:
        raise ConfigError(f"config key 'train.device': {exc}") from None
