"""The preprocessing a model expects, as data: what ``preprocess.json`` holds.

A trained run standardises its inputs, ``x' = (x − mean) / std``, and the exported model
must be fed exactly that. :class:`Preprocess` records it and applies it with numpy and Pillow
only (no torch), so an exported model is usable without the training code:

* ``kind="image"``: an image (file path, encoded bytes or Pillow image) is converted to
  ``color_mode`` (``"L"``: one grey channel; ``"RGB"``: channels in R, G, B order), resized
  to ``size`` = (H, W) by ``resize`` (``"bilinear"`` stretch, aspect ratio not kept — what the
  image-folder loader did at training time), scaled by ``scale`` (1/255: pixels in [0, 1]),
  laid out channels first (C, H, W), then standardised. A numpy array is taken as pixels
  already in [0, 1] in that layout (what the datasets give) and only standardised.
* ``kind="features"``: arrays of ``input_shape`` (or flattened to its size) are standardised.

``mean`` and ``std`` hold one value (one scalar for all, as tripletlab's runs use) or one
per channel.

Example:
    >>> import numpy as np
    >>> spec = Preprocess(kind="features", input_shape=(2,), mean=(1.0,), std=(2.0,))
    >>> spec(np.array([[1.0, 5.0]])).tolist()
    [[0.0, 2.0]]
    >>> Preprocess.from_dict(spec.to_dict()) == spec
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tripletlab.deploy.images import DEFAULT_MAX_PIXELS, open_image
from tripletlab.errors import ConfigError, DataError

__all__ = ["KINDS", "PREPROCESS_FORMAT", "PREPROCESS_VERSION", "Preprocess"]

PREPROCESS_FORMAT = "tripletlab-preprocess"
PREPROCESS_VERSION = 1
KINDS = ("image", "features")
_COLOR_MODES = {"L": 1, "RGB": 3}
_RESIZE_RULES = ("bilinear", "bicubic", "nearest")
_NPY_MAGIC = b"\x93NUMPY"


@dataclass(frozen=True)
class Preprocess:
    """How raw inputs become the model's input tensor (see the module docstring)."""

    kind: str
    input_shape: tuple[int, ...]
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    color_mode: str | None = None
    resize: str | None = None
    scale: float = 1.0
    max_pixels: int = field(default=DEFAULT_MAX_PIXELS, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"preprocess kind must be one of {KINDS}; got {self.kind!r}")
        if not self.input_shape or any(int(s) < 1 for s in self.input_shape):
            raise ConfigError(f"preprocess input_shape must be positive; got {self.input_shape}")
        if any(not math.isfinite(s) or s <= 0 for s in self.std):
            raise ConfigError(f"preprocess std must be positive and finite; got {self.std}")
        if self.kind == "image":
            if len(self.input_shape) != 3:
                raise ConfigError(f"an image input_shape is (C, H, W); got {self.input_shape}")
            if _COLOR_MODES.get(self.color_mode or "") != self.input_shape[0]:
                raise ConfigError(
                    f"color_mode {self.color_mode!r} does not give {self.input_shape[0]} channels"
                )
            if self.resize not in _RESIZE_RULES:
                raise ConfigError(f"resize must be one of {_RESIZE_RULES}; got {self.resize!r}")

    @classmethod
    def image(
        cls, channels: int, height: int, width: int, mean: Sequence[float], std: Sequence[float]
    ) -> Preprocess:
        """The image rule of tripletlab's image datasets: pixels in [0, 1], bilinear resize."""
        mode = "L" if channels == 1 else "RGB"
        return cls(
            "image", (channels, height, width), tuple(mean), tuple(std), mode, "bilinear", 1 / 255
        )

    @property
    def size(self) -> tuple[int, int] | None:
        """(H, W) of an image input, else None."""
        return (self.input_shape[1], self.input_shape[2]) if self.kind == "image" else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written as ``preprocess.json``."""
        out: dict[str, Any] = {
            "format": PREPROCESS_FORMAT,
            "version": PREPROCESS_VERSION,
            "kind": self.kind,
            "input_shape": list(self.input_shape),
            "layout": "NCHW" if self.kind == "image" else "N" + "F" * len(self.input_shape),
            "mean": list(self.mean),
            "std": list(self.std),
            "formula": "(x * scale - mean) / std" if self.kind == "image" else "(x - mean) / std",
        }
        if self.kind == "image":
            out |= {
                "size": list(self.input_shape[1:]),
                "color_mode": self.color_mode,
                "channel_order": "L" if self.color_mode == "L" else "RGB",
                "resize": self.resize,
                "resize_rule": "stretch to size (aspect ratio not kept)",
                "scale": self.scale,
            }
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocess:
        """Read the JSON form (ConfigError on another format or a newer version)."""
        if data.get("format") != PREPROCESS_FORMAT:
            raise ConfigError(f"not a {PREPROCESS_FORMAT} file (format {data.get('format')!r})")
        if int(data.get("version", 0)) > PREPROCESS_VERSION:
            raise ConfigError(f"preprocess version {data['version']} is newer than this tripletlab")
        try:
            return cls(
                kind=data["kind"],
                input_shape=tuple(int(s) for s in data["input_shape"]),
                mean=tuple(float(v) for v in data["mean"]),
                std=tuple(float(v) for v in data["std"]),
                color_mode=data.get("color_mode"),
                resize=data.get("resize"),
                scale=float(data.get("scale", 1.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"preprocess spec is incomplete or malformed: {exc}") from None

    def __call__(self, inputs: Any) -> np.ndarray:
        """The model input (N, *input_shape) float32 of one input or a list of inputs.

        An input is a numpy array (one sample or a batch), a Pillow image, encoded image bytes
        or ``.npy`` bytes, or a path to an image or ``.npy`` file.
        """
        items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if not items:
            raise DataError("nothing to embed: the list of inputs is empty")
        batch = np.concatenate([self._one(item) for item in items])
        return self._standardise(batch)

    def _one(self, item: Any) -> np.ndarray:
        """(n, *input_shape) raw values of one input, before standardisation."""
        if isinstance(item, (str, Path)) and Path(item).suffix.lower() == ".npy":
            return self._array(_load_npy(Path(item)))
        if isinstance(item, bytes) and item.startswith(_NPY_MAGIC):
            import io

            return self._array(_load_npy(io.BytesIO(item)))
        if isinstance(item, np.ndarray):
            return self._array(item)
        if isinstance(item, (str, Path, bytes)):
            item = open_image(item, max_pixels=self.max_pixels)
        if hasattr(item, "convert") and hasattr(item, "resize"):  # a Pillow image
            return self._pixels(item)[None]
        raise DataError(f"cannot embed an input of type {type(item).__name__}")

    def _array(self, array: np.ndarray) -> np.ndarray:
        array = np.asarray(array, dtype=np.float32)
        size = math.prod(self.input_shape)
        if array.ndim >= 1 and array.size % size == 0 and array.size > 0:
            if tuple(array.shape) == self.input_shape or array.shape == (size,):
                return array.reshape(1, *self.input_shape)
            if math.prod(array.shape[1:]) == size:
                return array.reshape(len(array), *self.input_shape)
        raise DataError(
            f"an input array of shape {tuple(array.shape)} does not fit the model's input "
            f"{self.input_shape} (one sample or a batch of them)"
        )

    def _pixels(self, image: Any) -> np.ndarray:
        if self.kind != "image":
            raise DataError(
                f"this model takes feature vectors of shape {self.input_shape}, not images"
            )
        from PIL import Image

        if image.mode in ("I", "I;16", "F"):  # 16-bit / float grey: as the training loader
            values = np.asarray(image, dtype=np.float64)
            image = Image.fromarray((values / (values.max() or 1.0) * 255).astype(np.uint8))
        converted = image.convert(self.color_mode)
        height, width = self.input_shape[1:]
        if converted.size != (width, height):
            rule = getattr(Image.Resampling, str(self.resize).upper())
            converted = converted.resize((width, height), rule)
        array = np.asarray(converted, dtype=np.float32) * np.float32(self.scale)
        return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)

    def _standardise(self, batch: np.ndarray) -> np.ndarray:
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        if mean.size > 1:  # one value per channel: broadcast over (N, C, H, W)
            mean = mean.reshape(1, -1, *([1] * (batch.ndim - 2)))
            std = std.reshape(1, -1, *([1] * (batch.ndim - 2)))
        out = (batch - mean) / std
        if not np.isfinite(out).all():
            raise DataError("the input holds NaN or infinite values")
        return np.ascontiguousarray(out, dtype=np.float32)


def _load_npy(source: Any) -> np.ndarray:
    try:
        return np.load(source, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read a numeric .npy array ({exc})") from None
