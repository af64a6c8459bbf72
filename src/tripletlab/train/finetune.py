"""Fine-tuning controls: parameter groups, a frozen-backbone start, learning-rate warm-up.

- :func:`parameter_groups`: the backbone learns at ``lr × backbone_lr_multiplier`` (a
  pretrained backbone needs smaller steps than a freshly initialised head), and weight
  decay is applied to weight matrices / kernels only — not to biases, normalisation
  parameters or other 1-D parameters (GeM's p), whose decay pulls them towards 0 for no
  regularising benefit (Loshchilov & Hutter, "Decoupled Weight Decay Regularization",
  ICLR 2019; the common practice of timm and Hugging Face trainers).
- :class:`FreezeBackbone`: an epoch-start hook that keeps the backbone frozen (no gradient,
  BatchNorm statistics fixed in eval mode) for the first N epochs, so that a random head
  does not send large gradients into pretrained features; it depends on the epoch only, so
  a resumed run freezes exactly as the uninterrupted one.
- :func:`build_warmup_scheduler`: linear warm-up from ``lr × start_factor`` over the first
  epochs, then the chosen schedule. Schedulers are stepped per epoch by the Trainer.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from tripletlab.errors import ConfigError

__all__ = ["FreezeBackbone", "parameter_groups"]


def parameter_groups(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    backbone: nn.Module | None = None,
    backbone_lr_multiplier: float = 1.0,
) -> list[dict[str, Any]]:
    """Optimiser parameter groups: (backbone | rest) × (decayed | not decayed).

    A parameter is not decayed when it has fewer than 2 dimensions (biases, norm scales and
    shifts, GeM's p) or belongs to a normalisation layer. Empty groups are left out; each
    group carries a ``name`` for logs.

    Args:
        model: the whole network (e.g. an :class:`~tripletlab.nn.heads.Embedder`).
        lr: the base learning rate (of the head).
        weight_decay: decay of the decayed groups.
        backbone: the sub-module that gets ``lr × backbone_lr_multiplier`` (None: all ``lr``).
        backbone_lr_multiplier: > 0.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
        >>> groups = parameter_groups(net, lr=0.1, weight_decay=0.01, backbone=net[0],
        ...                           backbone_lr_multiplier=0.1)
        >>> [(g["name"], len(g["params"]), round(g["lr"], 3), g["weight_decay"]) for g in groups]
        [('backbone', 1, 0.01, 0.01), ('backbone_no_decay', 1, 0.01, 0.0), ('head', 1, 0.1, 0.01), ('head_no_decay', 3, 0.1, 0.0)]
    """
    if not lr > 0:
        raise ConfigError(f"lr must be > 0; got {lr!r}")
    if not weight_decay >= 0:
        raise ConfigError(f"weight_decay must be >= 0; got {weight_decay!r}")
    if not backbone_lr_multiplier > 0:
        raise ConfigError(f"backbone_lr_multiplier must be > 0; got {backbone_lr_multiplier!r}")
    in_backbone = {id(p) for p in backbone.parameters()} if backbone is not None else set()
    no_decay = _no_decay_ids(model)
    groups: dict[str, list[nn.Parameter]] = {
        "backbone": [],
        "backbone_no_decay": [],
        "head": [],
        "head_no_decay": [],
    }
    for parameter in model.parameters():
        part = "backbone" if id(parameter) in in_backbone else "head"
        groups[part + ("_no_decay" if id(parameter) in no_decay else "")].append(parameter)
    return [
        {
            "name": name,
            "params": params,
            "lr": lr * (backbone_lr_multiplier if name.startswith("backbone") else 1.0),
            "weight_decay": 0.0 if name.endswith("no_decay") else weight_decay,
        }
        for name, params in groups.items()
        if params
    ]


_NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


def _no_decay_ids(model: nn.Module) -> set[int]:
    ids = {id(p) for p in model.parameters() if p.dim() < 2}
    for module in model.modules():
        if isinstance(module, _NORM_LAYERS) or "norm" in type(module).__name__.lower():
            ids |= {id(p) for p in module.parameters(recurse=False)}
    return ids


class FreezeBackbone:
    """Epoch-start hook: the backbone is frozen during epochs 1…``epochs``.

    Frozen means no gradients (``requires_grad=False``, so optimisers skip the parameters:
    no update, no weight decay, no momentum state) and eval mode (BatchNorm keeps its
    pretrained running statistics, dropout is off). From epoch ``epochs + 1`` on the
    backbone trains normally.

    Args:
        backbone: the module to freeze.
        epochs: how many epochs (0: never frozen).

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
        >>> hook = FreezeBackbone(net[0], epochs=1)
        >>> class Run: epoch = 1
        >>> hook(Run); net[0].weight.requires_grad, net[0].training
        (False, False)
        >>> Run.epoch = 2; hook(Run); net[0].weight.requires_grad
        True
    """

    def __init__(self, backbone: nn.Module, epochs: int) -> None:
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ConfigError(f"freeze_epochs must be an integer >= 0; got {epochs!r}")
        self.backbone, self.epochs = backbone, epochs

    def frozen(self, epoch: int) -> bool:
        return epoch <= self.epochs

    def __call__(self, trainer: Any) -> None:
        frozen = self.frozen(int(trainer.epoch))
        for parameter in self.backbone.parameters():
            parameter.requires_grad_(not frozen)
        if frozen:
            self.backbone.eval()
