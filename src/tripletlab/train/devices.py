"""Devices and numeric precision, validated before any work starts.

``--device``: ``auto`` (CUDA, else Apple MPS, else CPU), ``cpu``, ``cuda``, ``cuda:N``,
``mps``. An unavailable device is a one-line :class:`DeviceError` saying why (this torch
has no CUDA support at all, no GPU is visible, the index is out of range) instead of
torch's ``AssertionError: Torch not compiled with CUDA enabled`` deep inside a run.

``--precision``:

==============  ============================================================================
``32``          float32 throughout
``bf16``        forward under ``torch.autocast(dtype=bfloat16)``; bfloat16 keeps float32's
                exponent range, so no loss scaling is needed (CPUs and recent GPUs)
``16-mixed``    forward under ``torch.autocast(dtype=float16)`` and a ``GradScaler``: the
                loss is scaled up before backward so that small gradients do not flush to
                zero in float16, and steps with inf/NaN gradients are skipped
==============  ============================================================================

The tripletlab batch losses compute float16/bfloat16 embeddings in float32 (DESIGN), so only
the network runs in reduced precision. Reference: Micikevicius et al., "Mixed Precision
Training", ICLR 2018.

``channels_last`` memory format speeds up convolutions on GPUs with tensor cores; it is
worth it for CNN backbones (feature maps) on CUDA only (:func:`use_channels_last`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from tripletlab.errors import ConfigError

__all__ = [
    "PRECISIONS",
    "DeviceError",
    "Precision",
    "move_model",
    "resolve_device",
    "resolve_precision",
    "use_channels_last",
]

PRECISIONS = ("32", "bf16", "16-mixed")
_CUDA_INDEX = re.compile(r"^cuda(?::(\d+))?$")


class DeviceError(ConfigError):
    """The requested device is not available on this machine or in this torch build."""


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """The ``torch.device`` for ``spec``, checked to exist.

    Raises:
        DeviceError: the device is not available (one line saying why).
        ConfigError: ``spec`` is not a device name.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    name = str(spec).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    match = _CUDA_INDEX.match(name)
    if match:
        return _cuda_device(name, match.group(1))
    if name == "mps":
        if not torch.backends.mps.is_built():
            raise DeviceError("device 'mps' is not available: this torch build has no MPS support")
        if not torch.backends.mps.is_available():
            raise DeviceError("device 'mps' is not available: needs macOS 12.3+ on Apple silicon")
        return torch.device("mps")
    raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps; got {spec!r}")


def _cuda_device(name: str, index: str | None) -> torch.device:
    if not torch.backends.cuda.is_built():
        raise DeviceError(
            f"device {name!r} is not available: this torch build ({torch.__version__}) has no "
            "CUDA support; install a CUDA build of torch or use device cpu"
        )
    if not torch.cuda.is_available():
        raise DeviceError(
            f"device {name!r} is not available: no CUDA GPU is visible (check the driver "
            "and CUDA_VISIBLE_DEVICES) — use device cpu or auto"
        )
    count = torch.cuda.device_count()
    if index is not None and int(index) >= count:
        raise DeviceError(f"device {name!r} does not exist: this machine has {count} CUDA GPU(s)")
    return torch.device(name)


def _mps_available() -> bool:
    return bool(torch.backends.mps.is_built() and torch.backends.mps.is_available())


@dataclass(frozen=True)
class Precision:
    """A validated precision for one device: the autocast context and the grad scaler.

    Example:
        >>> bf16 = resolve_precision("bf16", torch.device("cpu"))
        >>> with bf16.autocast():
        ...     y = torch.nn.Linear(4, 2)(torch.randn(3, 4))
        >>> y.dtype, bf16.make_scaler() is None
        (torch.bfloat16, True)
    """

    name: str
    device_type: str

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype (None for full float32)."""
        return {"32": None, "bf16": torch.bfloat16, "16-mixed": torch.float16}[self.name]

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """The forward pass's context: ``torch.autocast`` or nothing for ``32``."""
        if self.dtype is None:
            yield
            return
        with torch.autocast(self.device_type, dtype=self.dtype):
            yield

    def make_scaler(self) -> torch.amp.GradScaler | None:
        """A ``GradScaler`` for ``16-mixed`` (None otherwise: no scaling needed)."""
        if self.name != "16-mixed":
            return None
        return torch.amp.GradScaler(self.device_type)


def resolve_precision(name: str | int, device: torch.device) -> Precision:
    """Validate ``name`` (``32``, ``bf16``, ``16-mixed``) for ``device``.

    Raises:
        ConfigError: an unknown name, or bf16 on a CUDA GPU without bfloat16 support.
    """
    text = str(name).strip().lower()
    text = {"fp32": "32", "32-true": "32", "bf16-mixed": "bf16", "fp16": "16-mixed"}.get(text, text)
    if text not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}; got {name!r}")
    if text == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            f"precision bf16 is not supported by {torch.cuda.get_device_name(device)}; use 16-mixed"
        )
    return Precision(text, device.type)


def use_channels_last(feature_kind: str | None, device: torch.device) -> bool:
    """Channels-last pays for convolutional backbones (feature maps) on CUDA only.

    Example:
        >>> use_channels_last("map", torch.device("cpu")), use_channels_last("tokens", torch.device("cpu"))
        (False, False)
    """
    return feature_kind == "map" and device.type == "cuda"


def move_model(model: nn.Module, device: torch.device, *, channels_last: bool = False) -> nn.Module:
    """``model`` on ``device`` (in channels-last memory format when asked)."""
    if channels_last:
        return model.to(device=device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model.to(device)
