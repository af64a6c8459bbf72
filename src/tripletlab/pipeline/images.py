"""Runs on image folders that stream from disk, with any backbone (issue 12's wiring).

When ``data.stream`` says so (:func:`should_stream`: always for ``hf:`` / ``module:factory``
backbones, and for folders of more than :data:`LARGE_FOLDER_IMAGES` images), the dataset
keeps file names and labels only (:func:`~tripletlab.data.image_stream.stream_image_folder`)
and DataLoader workers decode the images; the model is an
:class:`~tripletlab.nn.heads.Embedder` — ``head(backbone(preprocess(uint8 images)))`` —
whose preprocessing resizes, augments (train mode only) and normalises with the backbone's
constants, so checkpoints, ``Trainer.embed`` and exports see one module.

Example:
    >>> from tripletlab.pipeline.config import load_config
    >>> is_image_backbone(load_config(None, {"model.name": "hf:./my-resnet"}))
    True
    >>> image_sizes(load_config(None, {"data.image_size": [24, 32], "augment.preset": "light"}))
    ((24, 32), (27, 37))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tripletlab.data.augment import (
    AugmentConfig,
    CropConfig,
    ErasingConfig,
    FlipConfig,
    ImagePreprocess,
    augment_preset,
    load_size,
)
from tripletlab.data.image_stream import ImageFileDataset, image_size_pair, stream_image_folder
from tripletlab.errors import ConfigError
from tripletlab.nn.backbones import Backbone, build_backbone, parse_model_spec
from tripletlab.nn.heads import Embedder, EmbeddingHead
from tripletlab.pipeline.config import RunConfig
from tripletlab.pipeline.data import IMAGE_SUFFIXES, PreparedData, split_for

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "LARGE_FOLDER_IMAGES",
    "RAW_BASELINE_MAX_VALUES",
    "backbone_of",
    "build_image_model",
    "image_sizes",
    "is_image_backbone",
    "prepare_stream",
    "should_stream",
]

#: What hf:/factory backbones see when ``data.image_size`` is unset (ImageNet's usual size).
DEFAULT_IMAGE_SIZE = 224
#: Built-in mlp/cnn image-folder sizes when unset (the bundled CNN's input).
DEFAULT_BUILTIN_IMAGE_SIZE = 28
#: ``data.stream = "auto"`` streams folders larger than this: the in-memory path holds a
#: float32 array (938 MiB for 20,000 64-px images, docs/drafts/images.md).
LARGE_FOLDER_IMAGES = 20_000
#: The raw-pixel baseline of a streamed test split is decoded in memory up to this many
#: float32 values (1 GiB); larger test splits are compared at a 32×32 thumbnail instead.
RAW_BASELINE_MAX_VALUES = 2**28
#: The thumbnail the raw baseline falls back to.
RAW_BASELINE_THUMBNAIL = (32, 32)


def is_image_backbone(cfg: RunConfig) -> bool:
    """The model is an ``hf:`` or ``module:factory`` backbone (not the built-in mlp/cnn)."""
    return parse_model_spec(cfg.model.name).kind in ("hf", "factory")


def _count_images(root: Path, limit: int) -> int:
    count = 0
    for path in root.rglob("*"):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            count += 1
            if count > limit:
                break
    return count


def should_stream(cfg: RunConfig) -> bool:
    """Whether the run reads its image folder lazily (see the module docstring).

    ``data.stream = "yes"`` needs an image folder; an image backbone needs one too.
    """
    root = Path(cfg.data.dataset)
    folder = root.is_dir()
    if cfg.data.stream == "yes" or (is_image_backbone(cfg) and cfg.data.stream == "auto"):
        if not folder:
            raise ConfigError(
                f"{cfg.model.name if is_image_backbone(cfg) else 'data.stream = yes'} needs an "
                f"image folder (one sub-folder per class); got dataset {cfg.data.dataset!r}"
            )
        return True
    if cfg.data.stream == "no":
        if is_image_backbone(cfg):
            raise ConfigError(
                f"model {cfg.model.name} reads images as they stream; set data.stream to auto"
            )
        return False
    return folder and _count_images(root, LARGE_FOLDER_IMAGES) > LARGE_FOLDER_IMAGES


def _augment(cfg: RunConfig) -> AugmentConfig:
    a = cfg.augment
    overrides: dict[str, Any] = {}
    base = augment_preset(a.preset)
    if a.crop_scale is not None:
        scale = tuple(float(v) for v in a.crop_scale)
        if len(scale) != 2:
            raise ConfigError(f"augment.crop_scale must be [low, high]; got {a.crop_scale}")
        overrides["crop"] = CropConfig(scale=(scale[0], scale[1]))
    if a.flip_p is not None:
        overrides["flip"] = FlipConfig(p=a.flip_p) if a.flip_p > 0 else None
    if a.erasing_p is not None:
        overrides["erasing"] = ErasingConfig(p=a.erasing_p) if a.erasing_p > 0 else None
    if a.eval_crop_fraction is not None:
        overrides["eval_crop_fraction"] = a.eval_crop_fraction
    return augment_preset(a.preset, **overrides) if overrides else base


def image_sizes(cfg: RunConfig) -> tuple[tuple[int, int], tuple[int, int]]:
    """(what the backbone sees, what images are decoded at) — the latter is wider by the
    evaluation centre crop (:func:`~tripletlab.data.augment.load_size`)."""
    default = DEFAULT_IMAGE_SIZE if is_image_backbone(cfg) else DEFAULT_BUILTIN_IMAGE_SIZE
    size = image_size_pair(cfg.data.image_size if cfg.data.image_size is not None else default)
    return size, load_size(size, _augment(cfg))


def _raw_baseline(test: ImageFileDataset, workers: int) -> Tensor:
    """The test images as (N, F) float vectors in [0, 1] (a thumbnail when too large)."""
    n_values = len(test) * 3 * test.image_size[0] * test.image_size[1]
    if n_values > RAW_BASELINE_MAX_VALUES:
        test = ImageFileDataset(
            test.root, test.files, test.labels, test.class_names, RAW_BASELINE_THUMBNAIL,
            on_unreadable=test.on_unreadable, name=test.name,
        )  # fmt: skip
    loader = torch.utils.data.DataLoader(test, batch_size=256, num_workers=workers)
    chunks = [images.reshape(len(images), -1).float() / 255.0 for images, _ in loader]
    return torch.cat(chunks) if chunks else torch.empty(0, 3 * 32 * 32)


def prepare_stream(cfg: RunConfig) -> PreparedData:
    """The configured image folder, split like :func:`~tripletlab.pipeline.data.prepare_data`,
    as streaming datasets (``x_train`` / ``x_val`` / ``x_test`` are ImageFileDatasets)."""
    _, decoded = image_sizes(cfg)
    data = stream_image_folder(
        cfg.data.dataset, image_size=decoded, on_unreadable=cfg.data.on_unreadable
    )
    labels = data.labels
    if cfg.data.max_samples is not None and cfg.data.max_samples < len(labels):
        from tripletlab.data import stratified_split

        keep = stratified_split(labels, 1 - cfg.data.max_samples / len(labels), cfg.seed).train
        data, labels = data.subset(keep), labels[keep]
    train, val, test = split_for(cfg, labels, None, data.name)
    test_set = data.subset(test)
    return PreparedData(
        data.subset(train),
        labels[train],
        data.subset(val),
        labels[val],
        test_set,
        labels[test],
        data.feature_shape,
        list(data.class_names),
        0.0,  # the model normalises uint8 images itself (ImagePreprocess)
        1.0,
        data.name,
        _raw_baseline(test_set, cfg.train.workers),
    )


def build_image_model(
    cfg: RunConfig, in_shape: tuple[int, ...], *, pretrained: bool | None = None
) -> tuple[Embedder, Backbone]:
    """``Embedder(backbone, head, preprocess)`` for uint8 images of ``in_shape`` (3, h, w)
    (the decoded size); returns it and its backbone (for parameter groups and freezing).

    ``pretrained`` (hf only): None follows ``model.pretrained``; rebuilding a trained run
    passes False (the weights come from the checkpoint, no cache needed).
    """
    size, _ = image_sizes(cfg)
    spec = parse_model_spec(cfg.model.name)
    builtin = spec.kind in ("mlp", "cnn")
    m = cfg.model
    if spec.kind == "hf":
        chosen = m.pretrained if pretrained is None else pretrained
        backbone = build_backbone(spec, (3, *size), pretrained=chosen)
    elif builtin:
        options: dict[str, Any] = {"activation": m.activation}
        if spec.kind == "mlp":
            options |= {"hidden": tuple(m.hidden), "dropout": m.dropout}
        elif m.hidden:
            options["hidden"] = int(m.hidden[0])
        backbone = build_backbone(spec, (3, *size), builtin_dim=m.embedding_dim, **options)
    else:
        backbone = build_backbone(spec, (3, *size))
    if backbone.feature_kind is None or backbone.feature_dim is None:  # build_backbone probes
        raise ConfigError(f"model {cfg.model.name}: its output could not be probed")
    head = EmbeddingHead(
        backbone.feature_kind,
        backbone.feature_dim,
        pooling=m.pooling,
        embedding_dim=None if builtin or not m.projection else m.embedding_dim,
        bnneck=m.bnneck,
        normalize=False,  # the Trainer normalises (model.normalize), as for every run
        has_cls=bool(backbone.has_cls),
    )
    preprocess = ImagePreprocess(size, backbone.mean, backbone.std, _augment(cfg))
    if len(in_shape) != 3:
        raise ConfigError(f"image runs take (3, H, W) samples; got {in_shape}")
    return Embedder(backbone, head, preprocess), backbone


def backbone_of(model: nn.Module) -> nn.Module | None:
    """The backbone of an :class:`Embedder` (None for the plain networks)."""
    return model.backbone if isinstance(model, Embedder) else None


@torch.no_grad()
def embed_stream(
    model: nn.Module, dataset: ImageFileDataset, batch_size: int, *, normalize: bool, workers: int
) -> Tensor:
    """Embeddings (N, D) on the CPU of a streamed dataset, read by a DataLoader in eval mode
    (what ``evaluate`` computes for a streamed run's test split)."""
    from tripletlab.nn.embedding import l2_normalize

    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    device = next(model.parameters()).device
    chunks = [model(images.to(device)).float().cpu() for images, _ in loader]
    out = torch.cat(chunks) if chunks else torch.empty(0, 0)
    return l2_normalize(out) if normalize else out
