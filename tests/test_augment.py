"""Batch augmentation: presets, train vs eval behaviour, normalisation, determinism."""

from __future__ import annotations

import pytest
import torch

from tripletlab.data.augment import (
    PRESETS,
    AugmentConfig,
    ColorJitterConfig,
    CropConfig,
    ErasingConfig,
    FlipConfig,
    ImagePreprocess,
    augment_preset,
    load_size,
)
from tripletlab.errors import ConfigError

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)


def _images(n=4, h=20, w=28):
    return torch.randint(0, 256, (n, 3, h, w), generator=torch.Generator().manual_seed(0)).to(
        torch.uint8
    )


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_gives_the_target_size_in_both_modes(preset):
    pre = ImagePreprocess((16, 24), MEAN, STD, augment_preset(preset))
    x = _images()
    assert pre.train()(x).shape == (4, 3, 16, 24)
    out = pre.eval()(x)
    assert out.shape == (4, 3, 16, 24) and torch.equal(out, pre(x))  # eval is deterministic


def test_normalisation_uses_the_backbone_constants():
    pre = ImagePreprocess((2, 2), MEAN, STD).eval()
    out = pre(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8))
    expected = torch.tensor([(1 - m) / s for m, s in zip(MEAN, STD, strict=True)])
    torch.testing.assert_close(out[0, :, 0, 0], expected)


def test_eval_is_resize_then_centre_crop():
    x = torch.zeros(1, 1, 8, 8)
    x[..., 2:6, 2:6] = 1.0  # a bright centre square
    pre = ImagePreprocess((4, 4), (0.0,), (1.0,), AugmentConfig(eval_crop_fraction=0.5)).eval()
    torch.testing.assert_close(pre(x), torch.ones(1, 1, 4, 4))  # 8→8, centre 4×4 kept


def test_training_mode_is_random_and_seeded():
    pre = ImagePreprocess((16, 16), MEAN, STD, augment_preset("strong")).train()
    x = _images(h=16, w=16)
    torch.manual_seed(3)
    first = pre(x)
    torch.manual_seed(3)
    assert torch.equal(first, pre(x))  # the global RNG decides: resumable
    assert not torch.equal(first, pre(x))
    assert not torch.equal(first, pre.eval()(x))


def test_flip_only_mirrors():
    pre = ImagePreprocess((4, 6), (0.0,) * 3, (1.0,) * 3, AugmentConfig(flip=FlipConfig(p=1.0)))
    x = torch.rand(2, 3, 4, 6)
    torch.testing.assert_close(pre.train()(x), x.flip(-1))


def test_erasing_writes_the_mean_after_normalisation():
    config = AugmentConfig(erasing=ErasingConfig(p=1.0, scale=(0.2, 0.3)))
    pre = ImagePreprocess((16, 16), MEAN, STD, config).train()
    out = pre(torch.full((2, 3, 16, 16), 255, dtype=torch.uint8))
    assert (out == 0).any() and (out > 0).any()


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: augment_preset("wild"), "augment must be one of none, light, strong"),
        (lambda: augment_preset("light", blur=None), "unknown augment option"),
        (lambda: CropConfig(scale=(0.9, 0.5)), "crop scale"),
        (lambda: FlipConfig(p=2.0), "flip p"),
        (lambda: ColorJitterConfig(hue=0.9), "hue"),
        (lambda: AugmentConfig(eval_crop_fraction=0.0), "eval_crop_fraction"),
        (
            lambda: ImagePreprocess((4, 4), (0.5,), (0.5,), augment_preset("strong")),
            "colour jitter needs RGB",
        ),
        (lambda: ImagePreprocess((4, 4), (0.5,), (0.0,)), "std > 0"),
    ],
)
def test_bad_augment_settings_are_config_errors(build, match):
    with pytest.raises(ConfigError, match=match):
        build()


def test_channels_last_output():
    pre = ImagePreprocess((8, 8), MEAN, STD, channels_last=True).eval()
    assert pre(_images(h=8, w=8)).is_contiguous(memory_format=torch.channels_last)


def test_images_loaded_at_load_size_are_only_centre_cropped_in_eval():
    config = augment_preset("light")
    size = (28, 21)
    loaded = load_size(size, config)
    assert loaded == (32, 24)
    x = torch.rand(1, 3, *loaded)
    out = ImagePreprocess(size, (0.0,) * 3, (1.0,) * 3, config).eval()(x)
    torch.testing.assert_close(out, x[..., 2:30, 1:22])
