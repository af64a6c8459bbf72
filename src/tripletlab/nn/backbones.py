"""Backbones: the network that turns images into features, from a model spec string.

=======================  ================================================================
spec                     backbone
=======================  ================================================================
``hf:PATH_OR_NAME``      a Hugging Face ``transformers`` vision model (ResNet, ConvNeXt,
                         ViT, DINOv2, CLIP vision, Swin, … — what ``AutoModel`` loads)
                         from a local folder or the local HF cache; never downloaded
``package.module:fn``    ``fn()`` from an importable module, returning an ``nn.Module``
                         (a timm or torchvision model, or your own)
``mlp`` / ``cnn``        the built-in networks of :mod:`tripletlab.nn.networks`
=======================  ================================================================

Every backbone is a :class:`Backbone`: an ``nn.Module`` mapping (N, 3, H, W) float images
(normalised with its ``mean`` / ``std``) to features of one of three kinds, found by
:func:`probe_backbone` with one forward pass on a zero batch:

- ``"map"``: (N, C, h, w) feature maps (CNNs: ResNet, ConvNeXt);
- ``"tokens"``: (N, T, D) token sequences; ``has_cls`` when token 0 is a class token
  (ViT, DINOv2, CLIP vision; Swin has none);
- ``"vector"``: (N, D) already pooled (the built-in networks, many user factories).

:class:`~tripletlab.nn.heads.EmbeddingHead` pools them into an embedding.

Normalisation constants: a transformers model's ``preprocessor_config.json``
(``image_mean`` / ``image_std``) when present, else the ImageNet statistics; a factory
module's ``image_mean`` / ``image_std`` attributes when it sets them, else ImageNet; the
built-in networks take [0, 1] pixels unchanged (mean 0, std 1), as on the in-memory path.

``transformers`` is imported only when an ``hf:`` spec is loaded (the ``vision`` extra).
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tripletlab.errors import ConfigError
from tripletlab.nn.networks import MODEL_NAMES, build_model

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Backbone",
    "HFBackbone",
    "ModelSpec",
    "build_backbone",
    "load_factory_backbone",
    "load_hf_backbone",
    "parse_model_spec",
    "probe_backbone",
]

#: ImageNet channel statistics: what most pretrained vision models were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FEATURE_KINDS = ("map", "tokens", "vector")
#: transformers model types whose token 0 is a class token (pooling "cls" reads it).
_CLS_TOKEN_TYPES = frozenset(
    {"vit", "deit", "dinov2", "dinov2_with_registers", "beit", "data2vec-vision", "dinov3_vit"}
)
#: Checkpoints holding a text and a vision tower: the vision tower is loaded alone.
_DUAL_TOWER_VISION = {"clip": "CLIPVisionModel"}
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_HOW_TO_GET = (
    "download it once with `hf download {name}` (or `huggingface-cli download {name}`), "
    "or pass hf:/path/to/a/folder holding config.json and the weights"
)


@dataclass(frozen=True)
class ModelSpec:
    """A parsed ``--model`` value: ``kind`` in hf | factory | mlp | cnn, and its target."""

    kind: str
    target: str


def parse_model_spec(spec: str) -> ModelSpec:
    """Parse ``hf:PATH_OR_NAME``, ``package.module:function``, ``mlp`` or ``cnn``.

    Example:
        >>> parse_model_spec("hf:./my-resnet"), parse_model_spec("my_models:small_net")
        (ModelSpec(kind='hf', target='./my-resnet'), ModelSpec(kind='factory', target='my_models:small_net'))
    """
    spec = str(spec).strip()
    if spec in MODEL_NAMES:
        return ModelSpec(spec, spec)
    if spec.startswith("hf:") and spec[3:].strip():
        return ModelSpec("hf", spec[3:].strip())
    if _FACTORY.match(spec):
        return ModelSpec("factory", spec)
    raise ConfigError(
        f"model must be 'mlp', 'cnn', 'hf:PATH_OR_NAME' (a transformers vision model) or "
        f"'package.module:function' (a factory returning an nn.Module); got {spec!r}"
    )


class Backbone(nn.Module):
    """A feature extractor with its input normalisation and (once probed) output kind.

    Args:
        module: maps (N, 3, H, W) images to features.
        name: for messages and reports.
        mean, std: per-channel normalisation of its [0, 1] inputs.
        has_cls: token 0 of a "tokens" output is a class token.

    Example:
        >>> net = Backbone(nn.Conv2d(3, 4, 3), "conv", (0.5,) * 3, (0.5,) * 3)
        >>> probe_backbone(net, (3, 8, 8)).feature_kind, net.feature_dim
        ('map', 4)
    """

    def __init__(
        self,
        module: nn.Module,
        name: str,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        has_cls: bool = False,
    ) -> None:
        super().__init__()
        self.module = module
        self.name = name
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        self.has_cls = has_cls
        self.feature_kind: str | None = None
        self.feature_dim: int | None = None

    def forward(self, images: Tensor) -> Tensor:
        return self.module(images)


class HFBackbone(Backbone):
    """A transformers vision model returning its last hidden state (maps or tokens).

    CLIP's vision tower applies ``post_layernorm`` only to its pooled class token; here it
    is applied to every token, so "cls" pooling gives CLIP's own image feature (before its
    projection) and "avg" pools normalised tokens. ViT-like models are called with
    ``interpolate_pos_encoding=True`` so that images of any size fit their position table.
    """

    def __init__(self, model: nn.Module, name: str, mean, std, *, has_cls: bool) -> None:
        super().__init__(model, name, mean, std, has_cls=has_cls)
        params = inspect.signature(model.forward).parameters
        self._call_options = (
            {"interpolate_pos_encoding": True} if "interpolate_pos_encoding" in params else {}
        )
        vision = getattr(model, "vision_model", None)
        self.post_norm = getattr(vision, "post_layernorm", None)

    def forward(self, images: Tensor) -> Tensor:
        hidden = self.module(pixel_values=images, **self._call_options).last_hidden_state
        return self.post_norm(hidden) if self.post_norm is not None else hidden


def probe_backbone(backbone: Backbone, in_shape: Sequence[int]) -> Backbone:
    """Run one zero batch of ``in_shape`` (C, H, W) to learn the feature kind and width.

    Raises:
        ConfigError: the backbone cannot take images of that size (one line).
    """
    was_training = backbone.training
    backbone.eval()
    parameter = next(backbone.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    try:
        with torch.no_grad():
            out = backbone(torch.zeros(1, *in_shape, device=device))
    except (RuntimeError, ValueError, IndexError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(
            f"model {backbone.name} cannot take images of shape {tuple(in_shape)}: {first}"
        ) from None
    finally:
        backbone.train(was_training)
    if not isinstance(out, Tensor) or out.dim() not in (2, 3, 4):
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ConfigError(
            f"model {backbone.name} must return a tensor (N, D), (N, T, D) or (N, C, h, w); "
            f"got {shape}"
        )
    backbone.feature_kind = {2: "vector", 3: "tokens", 4: "map"}[out.dim()]
    backbone.feature_dim = int(out.shape[1] if out.dim() in (2, 4) else out.shape[2])
    return backbone


# -- Hugging Face transformers -------------------------------------------------------------
def load_hf_backbone(name_or_path: str, *, pretrained: bool = True) -> HFBackbone:
    """A transformers vision model from a local folder or the local HF cache.

    Args:
        name_or_path: a folder holding ``config.json`` (and the weights), or a hub id such
            as ``facebook/dinov2-small`` already in the local cache.
        pretrained: load the weights; False builds the architecture from its config with
            random weights (training from scratch).

    Raises:
        ConfigError: no such folder, not in the cache (the message says how to get it), or
            not a vision model transformers can load.
    """
    transformers = _import_transformers()
    source = _resolve_hf_source(name_or_path)
    try:
        config = transformers.AutoConfig.from_pretrained(source, local_files_only=True)
    except OSError:
        raise ConfigError(_not_found_message(name_or_path)) from None
    except ValueError as error:
        raise ConfigError(f"hf:{name_or_path} is not a model transformers knows: {error}") from None
    model_type = str(getattr(config, "model_type", ""))
    if getattr(config, "num_channels", 3) != 3:
        raise ConfigError(
            f"hf:{name_or_path} takes {config.num_channels}-channel images; images are RGB"
        )
    model = _build_hf_model(transformers, source, config, model_type, pretrained, name_or_path)
    mean, std = hf_normalization(source)
    return HFBackbone(
        model,
        f"hf:{name_or_path}",
        mean,
        std,
        has_cls=model_type in _CLS_TOKEN_TYPES or model_type in _DUAL_TOWER_VISION,
    )


def _build_hf_model(transformers, source, config, model_type, pretrained, name) -> nn.Module:
    vision_class = _DUAL_TOWER_VISION.get(model_type)
    try:
        if vision_class is not None:
            cls = getattr(transformers, vision_class)
            if pretrained:
                return cls.from_pretrained(source, local_files_only=True)
            return cls(config.vision_config)
        if pretrained:
            return transformers.AutoModel.from_pretrained(source, local_files_only=True)
        return transformers.AutoModel.from_config(config)
    except OSError as error:
        raise ConfigError(f"hf:{name}: cannot read the weights ({error})".split("\n")[0]) from None
    except ValueError as error:
        first = str(error).splitlines()[0]
        raise ConfigError(f"hf:{name} cannot be loaded as a vision model: {first}") from None


def _resolve_hf_source(name_or_path: str) -> str:
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"hf:{name_or_path}: {path} has no config.json (save a model there with "
                "model.save_pretrained(folder))"
            )
        return str(path)
    if path.exists():
        raise ConfigError(f"hf:{name_or_path}: {path} is a file; pass the model's folder")
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ConfigError(f"model folder not found: {path}")
    return name_or_path  # a hub id, looked up in the local cache only


def _not_found_message(name: str) -> str:
    from huggingface_hub import constants

    return (
        f"model {name!r} is neither a folder nor in the local Hugging Face cache "
        f"({constants.HF_HUB_CACHE}); nothing is downloaded at run time: "
        + _HOW_TO_GET.format(name=name)
    )


def hf_normalization(source: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``image_mean`` / ``image_std`` of the model's image processor config, else ImageNet's."""
    from transformers.utils import cached_file

    try:
        file = cached_file(
            source,
            "preprocessor_config.json",
            local_files_only=True,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
    except OSError:
        file = None
    if file is None:
        return IMAGENET_MEAN, IMAGENET_STD
    settings = json.loads(Path(file).read_text())
    mean, std = settings.get("image_mean"), settings.get("image_std")
    if not (isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std) == 3):
        return IMAGENET_MEAN, IMAGENET_STD
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _import_transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise ConfigError(
            "hf: models need the 'vision' extra: pip install 'tripletlab[vision]'"
        ) from None
    return transformers


# -- user factories ------------------------------------------------------------------------
def load_factory_backbone(spec: str) -> Backbone:
    """``package.module:function`` called with no arguments; it must return an nn.Module.

    Raises:
        ConfigError: the module does not import, has no such function, or the function
            returns something that is not an ``nn.Module`` (one line each). Exceptions
            raised inside the function itself are the user's bugs and keep their traceback.
    """
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(
            f"model factory {spec!r}: cannot import {module_name!r} ({error}); is it on "
            "PYTHONPATH or installed?"
        ) from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ConfigError(f"model factory {spec!r}: {module_name} has no function {attribute!r}")
    network = factory()
    if not isinstance(network, nn.Module):
        raise ConfigError(
            f"model factory {spec!r} returned {type(network).__name__}, not a torch.nn.Module"
        )
    mean = getattr(network, "image_mean", IMAGENET_MEAN)
    std = getattr(network, "image_std", IMAGENET_STD)
    return Backbone(
        network, spec, mean, std, has_cls=bool(getattr(network, "has_cls_token", False))
    )


# -- one entry point -----------------------------------------------------------------------
def build_backbone(
    spec: str | ModelSpec,
    in_shape: Sequence[int],
    *,
    pretrained: bool | None = None,
    builtin_dim: int = 64,
    **builtin_options: Any,
) -> Backbone:
    """The backbone of ``spec``, probed on ``in_shape`` (C, H, W).

    Args:
        spec: a model spec string (see :func:`parse_model_spec`) or a parsed spec.
        in_shape: the shape of one input sample.
        pretrained: ``hf:`` only: load the weights (None or True), or build the
            architecture with random weights (False). Given for another kind: ConfigError.
        builtin_dim: output width of the built-in ``mlp`` / ``cnn``.
        **builtin_options: passed to :func:`~tripletlab.nn.networks.build_model`.

    Example:
        >>> backbone = build_backbone("cnn", (3, 12, 16), builtin_dim=8)
        >>> backbone.feature_kind, backbone.feature_dim, backbone.mean
        ('vector', 8, (0.0, 0.0, 0.0))
    """
    parsed = spec if isinstance(spec, ModelSpec) else parse_model_spec(spec)
    if builtin_options and parsed.kind not in MODEL_NAMES:
        raise ConfigError(
            f"options {sorted(builtin_options)} apply to the built-in mlp/cnn only, "
            f"not to {parsed.target}"
        )
    if pretrained is not None and parsed.kind != "hf":
        raise ConfigError(
            f"pretrained applies to hf: models only; {parsed.target} builds its own weights"
        )
    if parsed.kind == "hf":
        backbone: Backbone = load_hf_backbone(parsed.target, pretrained=pretrained is not False)
    elif parsed.kind == "factory":
        backbone = load_factory_backbone(parsed.target)
    else:
        try:
            network = build_model(parsed.kind, in_shape, builtin_dim, **builtin_options)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        channels = int(in_shape[0]) if len(in_shape) == 3 else 1
        backbone = Backbone(network, parsed.kind, (0.0,) * channels, (1.0,) * channels)
    return probe_backbone(backbone, in_shape)
