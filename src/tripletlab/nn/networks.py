"""Embedding networks: an MLP and a small CNN, a factory, and the shared-network triplet embed.

One network embeds anchors, positives and negatives alike (FaceNet's "three networks that
share weights" are one network applied to a stacked batch, seed 000):
:func:`embed_triplets` does a single forward pass on ``cat([a, p, n])``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from tripletlab.errors import InvalidArgumentError
from tripletlab.nn.activations import get_activation
from tripletlab.nn.embedding import l2_normalize

MODEL_NAMES: tuple[str, ...] = ("mlp", "cnn")


class MLP(nn.Module):
    """Multi-layer perceptron ``in_dim → hidden… → out_dim`` with an activation between layers.

    The last layer is linear (no activation); with ``normalize=True`` the output rows are
    L2-normalised (embeddings on the unit sphere, as in FaceNet). ``hidden=()`` gives a single
    linear map — with MSE reconstruction that is PCA (lecture: "PCA is a special case of NN").
    Inputs of more than two dimensions (images) are flattened from dim 1.

    Args:
        in_dim: number of input features.
        hidden: widths of the hidden layers.
        out_dim: embedding dimension.
        activation: a name for :func:`~tripletlab.nn.activations.get_activation`
            (``"relu"`` default; ``None`` for a linear network).
        normalize: L2-normalise the output.
        dropout: dropout probability after each hidden activation.
        bias: use biases in the linear layers.

    Example:
        >>> net = MLP(2, (8,), 1, activation="tanh")
        >>> net(torch.zeros(4, 2)).shape
        torch.Size([4, 1])
    """

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int] = (128,),
        out_dim: int = 64,
        activation: str | None = "relu",
        normalize: bool = False,
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        _check_width(in_dim, "in_dim")
        _check_width(out_dim, "out_dim")
        hidden = tuple(hidden)
        for width in hidden:
            _check_width(width, "hidden")
        if not 0.0 <= float(dropout) < 1.0:
            raise InvalidArgumentError(f"dropout must be in [0, 1); got {dropout!r}")
        get_activation(activation)  # validate the name eagerly
        layers: list[nn.Module] = []
        widths = (in_dim, *hidden)
        for fan_in, fan_out in itertools.pairwise(widths):
            layers += [nn.Linear(fan_in, fan_out, bias=bias), get_activation(activation)]
            if dropout:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(widths[-1], out_dim, bias=bias))
        self.layers = nn.Sequential(*layers)
        self.in_dim, self.out_dim, self.normalize = in_dim, out_dim, bool(normalize)

    def forward(self, x: Tensor) -> Tensor:
        out = self.layers(x.flatten(1) if x.dim() > 2 else x)
        return l2_normalize(out) if self.normalize else out


class ConvNet(nn.Module):
    """A small CNN for single- or multi-channel images (e.g. 1×28×28 MNIST, 1×8×8 digits).

    Two blocks ``conv3×3 → BatchNorm → activation → maxpool2`` (channels ``channels``), then
    ``flatten → linear(hidden) → activation → linear(out_dim)``. Inputs may also be given
    flattened, (N, C·H·W); they are reshaped to (N, C, H, W). Images need not be square:
    ``image_size=(48, 64)`` takes (N, 3, 48, 64) photos.

    Args:
        in_channels: image channels C.
        image_size: H = W, or (H, W); each ≥ 2 ** len(channels) (4 by default).
        out_dim: embedding dimension.
        normalize: L2-normalise the output.
        channels: convolution widths of the two blocks.
        hidden: width of the fully connected layer.
        activation: activation name.

    Example:
        >>> net = ConvNet(1, 8, 16)
        >>> net(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 16])
        >>> ConvNet(3, (48, 64), 8)(torch.zeros(2, 3, 48, 64)).shape
        torch.Size([2, 8])
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int | tuple[int, int] = 28,
        out_dim: int = 64,
        normalize: bool = False,
        channels: Sequence[int] = (32, 64),
        hidden: int = 128,
        activation: str | None = "relu",
    ) -> None:
        super().__init__()
        _check_width(in_channels, "in_channels")
        _check_width(out_dim, "out_dim")
        _check_width(hidden, "hidden")
        height, width = _image_hw(image_size, 2 ** len(tuple(channels)))
        blocks: list[nn.Module] = []
        fan_in = in_channels
        for width_ in channels:
            _check_width(width_, "channels")
            blocks += [
                nn.Conv2d(fan_in, width_, kernel_size=3, padding=1),
                nn.BatchNorm2d(width_),
                get_activation(activation),
                nn.MaxPool2d(2),
            ]
            height, width, fan_in = height // 2, width // 2, width_
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(fan_in * height * width, hidden),
            get_activation(activation),
            nn.Linear(hidden, out_dim),
        )
        self.in_channels = in_channels
        self.image_size = _image_hw(image_size, 1)
        self.out_dim, self.normalize = out_dim, bool(normalize)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            x = x.reshape(len(x), self.in_channels, *self.image_size)
        elif x.dim() == 3:  # (N, H, W) single-channel images
            x = x.unsqueeze(1)
        out = self.head(self.features(x))
        return l2_normalize(out) if self.normalize else out


def build_model(name: str, in_shape: Sequence[int], embedding_dim: int, **kwargs) -> nn.Module:
    """An embedding network by name: ``"mlp"`` or ``"cnn"``.

    Args:
        name: ``"mlp"`` (input flattened to ∏in_shape features) or ``"cnn"`` (``in_shape`` =
            (C, H, W), or (H, W) for one channel, or (H·W,) for a square single-channel image).
        in_shape: the shape of one sample.
        embedding_dim: output dimension.
        **kwargs: passed to :class:`MLP` or :class:`ConvNet` (e.g. ``hidden``, ``normalize``).

    Example:
        >>> build_model("cnn", (1, 8, 8), 16)(torch.zeros(3, 64)).shape
        torch.Size([3, 16])
    """
    if name not in MODEL_NAMES:
        raise InvalidArgumentError(
            f"model must be one of {', '.join(map(repr, MODEL_NAMES))}; got {name!r}"
        )
    in_shape = tuple(int(s) for s in in_shape)
    if not in_shape or any(s < 1 for s in in_shape):
        raise InvalidArgumentError(
            f"in_shape must be a non-empty shape of positive sizes; got {in_shape}"
        )
    if name == "mlp":
        return MLP(math.prod(in_shape), out_dim=embedding_dim, **kwargs)
    channels, size = _image_geometry(in_shape)
    return ConvNet(channels, size, embedding_dim, **kwargs)


def embed_triplets(
    model: nn.Module, anchor: Tensor, positive: Tensor, negative: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Embed a, p and n with one forward pass of the shared ``model`` on the stacked batch.

    Example:
        >>> net = MLP(4, (8,), 2)
        >>> a, p, n = embed_triplets(net, torch.zeros(5, 4), torch.ones(5, 4), torch.ones(5, 4))
        >>> a.shape, p.shape, n.shape
        (torch.Size([5, 2]), torch.Size([5, 2]), torch.Size([5, 2]))
    """
    if not (anchor.shape == positive.shape == negative.shape):
        raise InvalidArgumentError(
            "anchor, positive and negative must have the same shape; got "
            f"{tuple(anchor.shape)}, {tuple(positive.shape)}, {tuple(negative.shape)}"
        )
    n = anchor.shape[0]
    out = model(torch.cat([anchor, positive, negative]))
    return out[:n], out[n : 2 * n], out[2 * n :]


def _image_geometry(in_shape: tuple[int, ...]) -> tuple[int, tuple[int, int]]:
    if len(in_shape) == 3:
        return in_shape[0], (in_shape[1], in_shape[2])
    if len(in_shape) == 2:
        return 1, (in_shape[0], in_shape[1])
    if len(in_shape) == 1 and math.isqrt(in_shape[0]) ** 2 == in_shape[0]:
        return 1, (math.isqrt(in_shape[0]),) * 2
    raise InvalidArgumentError(
        f"in_shape for 'cnn' must be (C, H, W), (H, W) or (H*H,); got {in_shape}"
    )


def _image_hw(image_size: object, smallest: int) -> tuple[int, int]:
    """(H, W) from an int or a pair, each >= ``smallest`` (the pooling halves it per block)."""
    pair = (image_size, image_size) if isinstance(image_size, int) else image_size
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= smallest for v in pair)
    ):
        raise InvalidArgumentError(
            f"image_size must be an integer or (H, W) of integers >= {smallest}; got {image_size!r}"
        )
    return int(pair[0]), int(pair[1])


def _check_width(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{name} must be a positive integer; got {value!r}")
    return value
