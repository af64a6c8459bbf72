"""Batch augmentation and normalisation of image tensors (kornia), train-time only.

:class:`ImagePreprocess` is an ``nn.Module`` placed in front of the backbone (as
:class:`~tripletlab.nn.heads.Embedder`'s ``preprocess``); it follows the embedder's mode:

- training: uint8 (or [0, 1] float) images → float in [0, 1] → random resized crop to
  ``size`` → horizontal flip → colour jitter → normalise ``(x − mean) / std`` → random
  erasing (after normalisation, so that erased pixels are the mean, as in Zhong et al.,
  "Random Erasing Data Augmentation", AAAI 2020);
- evaluation: resize to ``size / eval_crop_fraction`` and take the centre ``size`` crop
  (the usual ImageNet protocol, 224 of 256 for 0.875), then normalise. No randomness.

Augmenting a whole batch on the device (GPU when there is one) instead of per image in the
DataLoader workers keeps the workers to decoding. kornia draws from torch's global RNG,
which the Trainer seeds and checkpoints, so an augmented run resumes exactly.

Presets (``--augment``):

=========  =====================================================================
``none``   no augmentation; evaluation resizes to ``size`` only
``light``  crop scale 0.7–1, flip p = 0.5; eval centre crop 0.875
``strong`` crop scale 0.35–1, flip, colour jitter 0.4/0.4/0.4/0.1 (p = 0.8),
           random erasing p = 0.5; eval centre crop 0.875
=========  =====================================================================

kornia is imported only when some augmentation is enabled (the ``vision`` extra).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tripletlab.errors import ConfigError

__all__ = [
    "PRESETS",
    "AugmentConfig",
    "ColorJitterConfig",
    "CropConfig",
    "ErasingConfig",
    "FlipConfig",
    "ImagePreprocess",
    "augment_preset",
    "load_size",
]

#: 8-bit pixels are divided by this to lie in [0, 1].
UINT8_MAX = 255.0


def _check_range(name: str, low: float, high: float, floor: float, ceiling: float) -> None:
    if not floor <= low <= high <= ceiling:
        raise ConfigError(
            f"{name} must satisfy {floor} <= low <= high <= {ceiling}; got ({low}, {high})"
        )


def _check_probability(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"{name} must be a probability in [0, 1]; got {p!r}")


@dataclass(frozen=True)
class CropConfig:
    """Random resized crop: area fraction ``scale`` and aspect ``ratio`` ranges."""

    scale: tuple[float, float] = (0.7, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __post_init__(self) -> None:
        _check_range("crop scale", *self.scale, 1e-3, 1.0)
        _check_range("crop ratio", *self.ratio, 1e-2, 1e2)


@dataclass(frozen=True)
class FlipConfig:
    """Horizontal flip with probability ``p``."""

    p: float = 0.5

    def __post_init__(self) -> None:
        _check_probability("flip p", self.p)


@dataclass(frozen=True)
class ColorJitterConfig:
    """Colour jitter strengths (as torchvision's) applied with probability ``p``."""

    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    p: float = 0.8

    def __post_init__(self) -> None:
        for name in ("brightness", "contrast", "saturation"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"jitter {name} must be >= 0; got {getattr(self, name)!r}")
        if not 0.0 <= self.hue <= 0.5:
            raise ConfigError(f"jitter hue must be in [0, 0.5]; got {self.hue!r}")
        _check_probability("jitter p", self.p)


@dataclass(frozen=True)
class ErasingConfig:
    """Random erasing of a rectangle (area ``scale``, aspect ``ratio``) with probability ``p``."""

    p: float = 0.5
    scale: tuple[float, float] = (0.02, 0.33)
    ratio: tuple[float, float] = (0.3, 3.3)

    def __post_init__(self) -> None:
        _check_probability("erasing p", self.p)
        _check_range("erasing scale", *self.scale, 1e-4, 1.0)
        _check_range("erasing ratio", *self.ratio, 1e-2, 1e2)


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run (None: off) and the evaluation centre-crop fraction."""

    crop: CropConfig | None = None
    flip: FlipConfig | None = None
    jitter: ColorJitterConfig | None = None
    erasing: ErasingConfig | None = None
    eval_crop_fraction: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.eval_crop_fraction <= 1.0:
            raise ConfigError(
                f"eval_crop_fraction must be in (0, 1]; got {self.eval_crop_fraction!r}"
            )

    @property
    def enabled(self) -> bool:
        return any(part is not None for part in (self.crop, self.flip, self.jitter, self.erasing))


PRESETS: dict[str, AugmentConfig] = {
    "none": AugmentConfig(),
    "light": AugmentConfig(crop=CropConfig(), flip=FlipConfig(), eval_crop_fraction=0.875),
    "strong": AugmentConfig(
        crop=CropConfig(scale=(0.35, 1.0)),
        flip=FlipConfig(),
        jitter=ColorJitterConfig(),
        erasing=ErasingConfig(),
        eval_crop_fraction=0.875,
    ),
}


def augment_preset(name: str, **overrides: Any) -> AugmentConfig:
    """The preset ``name`` with some parts replaced (``crop=None`` turns the crop off).

    Example:
        >>> config = augment_preset("strong", erasing=None, flip=FlipConfig(p=0.25))
        >>> config.erasing is None, config.flip.p, config.crop.scale
        (True, 0.25, (0.35, 1.0))
    """
    if name not in PRESETS:
        raise ConfigError(f"augment must be one of {', '.join(PRESETS)}; got {name!r}")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(AugmentConfig)}
    if unknown:
        raise ConfigError(f"unknown augment option(s) {sorted(unknown)}")
    return dataclasses.replace(PRESETS[name], **overrides)


def load_size(image_size: Sequence[int], config: AugmentConfig) -> tuple[int, int]:
    """The (H, W) to decode images at so that evaluation's centre crop needs no resize:
    ``image_size / eval_crop_fraction`` (training's random crop then starts from the same
    wider view).

    Example:
        >>> load_size((224, 224), augment_preset("light")), load_size((48, 64), AugmentConfig())
        ((256, 256), (48, 64))
    """
    fraction = config.eval_crop_fraction
    return round(int(image_size[0]) / fraction), round(int(image_size[1]) / fraction)


class ImagePreprocess(nn.Module):
    """uint8 or [0, 1] images (N, C, H, W) → normalised float (N, C, *size), augmented in
    training mode.

    Args:
        size: (H, W) the backbone receives.
        mean, std: per-channel normalisation (from the backbone).
        config: the augmentations (default: none).
        channels_last: return channels-last tensors (faster convolutions on GPUs).

    Example:
        >>> pre = ImagePreprocess((4, 4), mean=(0.5,) * 3, std=(0.5,) * 3).eval()
        >>> x = torch.full((1, 3, 8, 8), 255, dtype=torch.uint8)
        >>> out = pre(x)
        >>> tuple(out.shape), out.max().item()
        ((1, 3, 4, 4), 1.0)
    """

    def __init__(
        self,
        size: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        config: AugmentConfig | None = None,
        *,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        height, width = (int(v) for v in size)
        if len(mean) != len(std) or not mean or any(s <= 0 for s in std):
            raise ConfigError(f"mean and std must be per channel with std > 0; got {mean}, {std}")
        self.size = (height, width)
        self.config = config or AugmentConfig()
        if self.config.jitter is not None and len(mean) != 3:
            raise ConfigError("colour jitter needs RGB images (3 channels)")
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self.channels_last = channels_last
        self.before_norm, self.after_norm = _kornia_parts(self.config, self.size)

    def forward(self, images: Tensor) -> Tensor:
        x = images.float() / UINT8_MAX if images.dtype == torch.uint8 else images.float()
        if x.dim() != 4:
            raise ValueError(f"images must be (N, C, H, W); got shape {tuple(images.shape)}")
        if self.training and self.before_norm is not None:
            x = self.before_norm(x)
        if tuple(x.shape[-2:]) != self.size:  # eval, or training without a random crop
            x = self._resize_centre_crop(x)
        x = (x - self._buffer("mean")) / self._buffer("std")
        if self.training and self.after_norm is not None:
            x = self.after_norm(x)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _buffer(self, name: str) -> Tensor:
        value = getattr(self, name)
        assert isinstance(value, Tensor)
        return value

    def _resize_centre_crop(self, x: Tensor) -> Tensor:
        height, width = self.size
        fraction = self.config.eval_crop_fraction
        resized = (round(height / fraction), round(width / fraction))
        if tuple(x.shape[-2:]) != resized:
            x = F.interpolate(x, size=resized, mode="bilinear", align_corners=False, antialias=True)
        top, left = (resized[0] - height) // 2, (resized[1] - width) // 2
        return x[..., top : top + height, left : left + width]


def _kornia_parts(config: AugmentConfig, size: tuple[int, int]) -> tuple[Any, Any]:
    """(augmentations before normalisation, after it), each an nn.Sequential or None."""
    if not config.enabled:
        return None, None
    try:
        import kornia.augmentation as K
    except ImportError:
        raise ConfigError(
            "augmentation needs the 'vision' extra: pip install 'tripletlab[vision]' "
            "(or use augment 'none')"
        ) from None
    before: list[nn.Module] = []
    if config.crop is not None:
        before.append(K.RandomResizedCrop(size, scale=config.crop.scale, ratio=config.crop.ratio))
    if config.flip is not None:
        before.append(K.RandomHorizontalFlip(p=config.flip.p))
    if config.jitter is not None:
        j = config.jitter
        before.append(K.ColorJitter(j.brightness, j.contrast, j.saturation, j.hue, p=j.p))
    after = None
    if config.erasing is not None:
        e = config.erasing
        after = nn.Sequential(K.RandomErasing(scale=e.scale, ratio=e.ratio, value=0.0, p=e.p))
    return (nn.Sequential(*before) if before else None), after
