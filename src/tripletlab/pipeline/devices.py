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

import os

import torch

from tripletlab.errors import ConfigError

__all__ = ["available_cpus", "check_threads", "resolve_device"]


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask, else ``os.cpu_count()``)."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return max(os.cpu_count() or 1, 1)  # pragma: no cover - macOS, Windows


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
    """The torch device ``name`` stands for on this machine (see the module docstring)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.backends.cuda.is_built():
            raise ConfigError(
                f"config key 'train.device': {name!r}, but this torch is built without CUDA"
            )
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index is not None and device.index >= count):
            raise ConfigError(f"config key 'train.device': {name!r}, but {count} GPU(s) found")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"config key 'train.device': {name!r}, but MPS is not available")
    return device
