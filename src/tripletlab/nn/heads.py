"""Embedding heads: pool a backbone's features, project, BNNeck, L2-normalise.

:class:`EmbeddingHead` turns the output of a :class:`~tripletlab.nn.backbones.Backbone`
into one embedding per image:

1. pooling — ``avg`` (mean over positions; the class token, if any, left out), ``gem``
   (generalised mean ``(mean xᵖ)^{1/p}`` with a learnable p, Radenović, Tolias & Chum,
   "Fine-tuning CNN Image Retrieval with No Human Annotation", TPAMI 2018; feature maps
   only, since it needs non-negative activations) or ``cls`` (the class token of ViT,
   DINOv2, CLIP). Backbones that already return vectors are used as they are (``avg``).
2. an optional linear projection to ``embedding_dim``;
3. an optional BNNeck (Luo et al., "Bag of Tricks and a Strong Baseline for Deep Person
   Re-identification", CVPRW 2019): a BatchNorm1d with a frozen zero bias after the
   features. The metric loss sees the features *before* it (``f_t``, training mode);
   retrieval uses those *after* it (``f_i``, eval mode), which Luo et al. found better with
   cosine distances. With a metric loss alone the BN's scale gets no gradient, so ``f_i`` is
   the per-dimension standardisation of ``f_t`` by the running statistics;
   :meth:`EmbeddingHead.both` returns ``(f_t, f_i)`` for an extra classification loss;
4. L2 normalisation (``normalize=True``): embeddings on the unit sphere.

:class:`Embedder` chains an optional preprocessing module (augmentation / normalisation,
see :mod:`tripletlab.data.augment`), the backbone and the head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tripletlab.errors import ConfigError

__all__ = ["POOLINGS", "Embedder", "EmbeddingHead", "GeM"]

POOLINGS = ("avg", "gem", "cls")
#: GeM's starting exponent: p = 3 is the value Radenović et al. found best and start from.
GEM_INITIAL_P = 3.0
#: Activations are clamped at this before xᵖ, so that the p-th root and its gradient stay
#: finite at zero activations (ReLU outputs are often exactly 0).
GEM_EPS = 1e-6


class GeM(nn.Module):
    """Generalised-mean pooling over the spatial positions of (N, C, h, w) maps → (N, C).

    ``p = 1`` is average pooling, ``p → ∞`` max pooling; p is learned.

    Example:
        >>> pool = GeM(p=1.0)
        >>> [round(v, 4) for v in pool(torch.arange(8.0).reshape(1, 2, 2, 2))[0].tolist()]
        [1.5, 5.5]
    """

    def __init__(self, p: float = GEM_INITIAL_P) -> None:
        super().__init__()
        if not p >= 1:
            raise ConfigError(f"GeM p must be >= 1; got {p!r}")
        self.p = nn.Parameter(torch.tensor(float(p)))

    def forward(self, maps: Tensor) -> Tensor:
        p = self.p.clamp(min=1.0)  # below 1 it is no longer a mean that pools features
        powered = maps.float().clamp(min=GEM_EPS).pow(p)
        return powered.mean(dim=(2, 3)).pow(1.0 / p).to(maps.dtype)


class EmbeddingHead(nn.Module):
    """Pooling → optional projection → optional BNNeck → optional L2 normalisation.

    Args:
        feature_kind: what the backbone returns: ``"map"`` (N, C, h, w), ``"tokens"``
            (N, T, D) or ``"vector"`` (N, D).
        in_dim: C or D of the backbone's features.
        pooling: ``"avg"``, ``"gem"`` (maps only) or ``"cls"`` (tokens with a class token).
        embedding_dim: project to this width (None: keep ``in_dim``).
        bnneck: add a BNNeck (see the module docstring).
        normalize: L2-normalise the output rows.
        has_cls: token 0 is a class token.

    Example:
        >>> head = EmbeddingHead("map", 8, pooling="gem", embedding_dim=4)
        >>> out = head(torch.rand(2, 8, 3, 5))
        >>> tuple(out.shape), [round(v, 4) for v in out.norm(dim=1).tolist()]
        ((2, 4), [1.0, 1.0])
    """

    def __init__(
        self,
        feature_kind: str,
        in_dim: int,
        *,
        pooling: str = "avg",
        embedding_dim: int | None = None,
        bnneck: bool = False,
        normalize: bool = True,
        has_cls: bool = False,
    ) -> None:
        super().__init__()
        _check_pooling(feature_kind, pooling, has_cls)
        if embedding_dim is not None and (isinstance(embedding_dim, bool) or embedding_dim < 1):
            raise ConfigError(f"embedding_dim must be a positive integer; got {embedding_dim!r}")
        self.feature_kind, self.pooling, self.has_cls = feature_kind, pooling, has_cls
        self.gem = GeM() if pooling == "gem" else None
        self.projection = nn.Linear(in_dim, embedding_dim) if embedding_dim else None
        self.out_dim = embedding_dim or in_dim
        self.bnneck = nn.BatchNorm1d(self.out_dim) if bnneck else None
        if self.bnneck is not None:
            self.bnneck.bias.requires_grad_(False)  # Luo et al.: no shift, keeps f_i centred
        self.normalize = normalize

    def pool(self, features: Tensor) -> Tensor:
        """(N, in_dim) pooled features."""
        if self.feature_kind == "vector":
            return features
        if self.feature_kind == "map":
            return self.gem(features) if self.gem is not None else features.mean(dim=(2, 3))
        if self.pooling == "cls":
            return features[:, 0]
        tokens = features[:, 1:] if self.has_cls and features.shape[1] > 1 else features
        return tokens.mean(dim=1)

    def both(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """``(f_t, f_i)``: the features before and after the BNNeck (equal without one),
        each L2-normalised when ``normalize``."""
        f_t = self.pool(features)
        if self.projection is not None:
            f_t = self.projection(f_t)
        f_i = self.bnneck(f_t) if self.bnneck is not None else f_t
        if self.normalize:
            return F.normalize(f_t, dim=1), F.normalize(f_i, dim=1)
        return f_t, f_i

    def forward(self, features: Tensor) -> Tensor:
        f_t, f_i = self.both(features)
        return f_t if self.training else f_i


def _check_pooling(feature_kind: str, pooling: str, has_cls: bool) -> None:
    if feature_kind not in ("map", "tokens", "vector"):
        raise ConfigError(f"feature_kind must be 'map', 'tokens' or 'vector'; got {feature_kind!r}")
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)}; got {pooling!r}")
    if feature_kind == "vector" and pooling != "avg":
        raise ConfigError(
            f"pooling {pooling!r} needs feature maps or tokens; this model returns pooled vectors (use avg)"
        )
    if pooling == "gem" and feature_kind != "map":
        raise ConfigError(
            "pooling 'gem' needs CNN feature maps; use 'avg' or 'cls' for token models"
        )
    if pooling == "cls" and not (feature_kind == "tokens" and has_cls):
        raise ConfigError(
            "pooling 'cls' needs a model with a class token (ViT, DINOv2, CLIP); use 'avg' or 'gem'"
        )


class Embedder(nn.Module):
    """``head(backbone(preprocess(x)))``: images to embeddings.

    Args:
        backbone: features from images (a :class:`~tripletlab.nn.backbones.Backbone`).
        head: an :class:`EmbeddingHead` (or any module pooling the features).
        preprocess: applied first, e.g. uint8 → normalised float with train-time
            augmentation (its ``train()`` / ``eval()`` mode follows the embedder's).

    Example:
        >>> from tripletlab.nn.backbones import build_backbone
        >>> backbone = build_backbone("cnn", (3, 8, 12), builtin_dim=6)
        >>> net = Embedder(backbone, EmbeddingHead("vector", 6))
        >>> tuple(net(torch.rand(5, 3, 8, 12)).shape)
        (5, 6)
    """

    def __init__(
        self, backbone: nn.Module, head: nn.Module, preprocess: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.backbone = backbone
        self.head = head

    def forward(self, images: Tensor) -> Tensor:
        if self.preprocess is not None:
            images = self.preprocess(images)
        return self.head(self.backbone(images))
