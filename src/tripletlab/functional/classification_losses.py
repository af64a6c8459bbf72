"""Classification losses of the lecture (seed 002): cross-entropy, focal loss, and entropy.

The lecture works in bits (log₂); every function here takes a ``base`` (natural log by default
for the losses, as in torch; 2 for :func:`entropy`, as in the lecture).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from tripletlab.functional.regression_losses import ELEMENT_REDUCTIONS, ElementReduction, _reduce
from tripletlab.validation import check_choice, check_nonnegative, check_positive


def cross_entropy(
    input: Tensor,
    target: Tensor,
    from_logits: bool = False,
    base: float = math.e,
    reduction: ElementReduction = "mean",
) -> Tensor:
    """Cross-entropy ``CE_i = −Σ_c y_{c,i}·log_base(p_{c,i})``.

    Args:
        input: (N, C) class probabilities, rows summing to 1 (``from_logits=False``, the
            lecture's form) or raw scores (``from_logits=True``: ``p = softmax(input)``,
            computed as a log-softmax).
        target: (N,) integer class indices, or (N, C) floating one-hot / soft labels.
        from_logits: whether ``input`` holds logits.
        base: logarithm base (``2`` gives bits, as in the lecture; default e, nats).
        reduction: ``"mean"`` (over the N samples), ``"sum"`` (the lecture's total) or
            ``"none"`` ((N,)).

    Probabilities of exactly 0 are clamped to the smallest positive normal number before the
    log, so a certain mistake costs a large finite loss instead of inf; ``0·log 0 = 0`` for the
    classes a soft target does not name.

    Example (the lecture's data 1 of model 1, in bits):
        >>> cross_entropy(torch.tensor([[0.4, 0.3, 0.3]]), torch.tensor([0]), base=2)
        tensor(1.3219)
    """
    check_choice(reduction, "reduction", ELEMENT_REDUCTIONS)
    base = _check_base(base)
    input = _check_scores(input, "input", ndim=2)
    n, c = input.shape
    log_p = _log_probabilities(input, from_logits)
    if not isinstance(target, Tensor):
        raise TypeError(f"target must be a torch.Tensor; got {type(target).__name__}")
    if target.is_floating_point():
        if target.shape != (n, c):
            raise ValueError(
                f"target (soft labels) must have shape ({n}, {c}); got {tuple(target.shape)}"
            )
        weights = target.to(log_p.dtype)
        values = -(torch.where(weights != 0, weights * log_p, torch.zeros_like(log_p))).sum(1)
    else:
        if target.shape != (n,):
            raise ValueError(
                f"target (class indices) must have shape ({n},); got {tuple(target.shape)}"
            )
        if n and (int(target.min()) < 0 or int(target.max()) >= c):
            raise ValueError(f"target class indices must be in [0, {c}); got {target.tolist()}")
        values = -log_p.gather(1, target.long()[:, None]).squeeze(1)
    return _reduce(values / math.log(base), reduction)


def focal_loss(
    input: Tensor,
    target: Tensor,
    gamma: float = 2.0,
    alpha: float | None = 0.25,
    from_logits: bool = False,
    reduction: ElementReduction = "mean",
) -> Tensor:
    """α-balanced focal loss (RetinaNet form) for binary / multi-label targets.

    ``FL(p_t) = −α_t·(1 − p_t)^γ·log(p_t)`` with ``p_t = p`` where ``y = 1`` and ``1 − p``
    where ``y = 0``, and ``α_t = α`` / ``1 − α`` likewise (``alpha=None``: no balancing,
    α_t = 1). γ = 0 and α = None give the binary cross-entropy (natural log).

    Args:
        input: probabilities p of the positive class (``from_logits=False``) or logits
            (``from_logits=True``: ``p = sigmoid(input)``, ``log p_t`` as a log-sigmoid); any
            shape.
        target: same shape, 0/1 values (bool, integer or float).
        gamma: focusing parameter γ ≥ 0.
        alpha: weight α ∈ [0, 1] of the positive class, or None.
        from_logits: whether ``input`` holds logits.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    References:
        Lin, Goyal, Girshick, He, Dollár. Focal Loss for Dense Object Detection. ICCV 2017.
        https://arxiv.org/abs/1708.02002

    Example:
        >>> focal_loss(torch.tensor([0.9, 0.1]), torch.tensor([1, 1]), gamma=2.0, alpha=None, reduction="none")
        tensor([1.0536e-03, 1.8651e+00])
    """
    check_choice(reduction, "reduction", ELEMENT_REDUCTIONS)
    gamma = check_nonnegative(gamma, "gamma")
    if alpha is not None:
        alpha = check_nonnegative(alpha, "alpha")
        if alpha > 1:
            raise ValueError(f"alpha must be in [0, 1] or None; got {alpha!r}")
    input = _check_scores(input, "input", ndim=None)
    if not isinstance(target, Tensor):
        raise TypeError(f"target must be a torch.Tensor; got {type(target).__name__}")
    if target.shape != input.shape:
        raise ValueError(
            f"target must have the shape of input {tuple(input.shape)}; got {tuple(target.shape)}"
        )
    if target.numel() and not bool(((target == 0) | (target == 1)).all()):
        raise ValueError("target must contain only 0/1 values")
    positive = target.bool()
    if from_logits:
        log_p_t = F.logsigmoid(torch.where(positive, input, -input))
    else:
        _check_probability_range(input)
        tiny = torch.finfo(input.dtype).tiny
        log_p_t = torch.where(positive, input, 1 - input).clamp_min(tiny).log()
    p_t = log_p_t.exp()
    values = -((1 - p_t) ** gamma) * log_p_t
    if alpha is not None:
        values = torch.where(positive, alpha * values, (1 - alpha) * values)
    return _reduce(values, reduction)


def entropy(p: Tensor, base: float = 2, dim: int = -1) -> Tensor:
    """Shannon entropy ``H = −Σ_i p_i·log_base(p_i)`` along ``dim`` (bits by default), 0·log 0 = 0.

    Example (the lecture: a fair 5-way choice carries log₂5 bits):
        >>> entropy(torch.full((5,), 0.2))
        tensor(2.3219)
    """
    base = _check_base(base)
    p = _check_scores(p, "p", ndim=None)
    _check_probability_range(p, "p")
    return -torch.special.xlogy(p, p).sum(dim) / math.log(base)


def information(p: Tensor, base: float = 2) -> Tensor:
    """Self-information ``I = −log_base(p)`` of an event of probability p (bits by default).

    Example (the lecture's student A, p = 0.4):
        >>> information(torch.tensor(0.4))
        tensor(1.3219)
    """
    base = _check_base(base)
    p = _check_scores(p, "p", ndim=None)
    _check_probability_range(p, "p")
    return -p.log() / math.log(base)


def _log_probabilities(input: Tensor, from_logits: bool) -> Tensor:
    if from_logits:
        return F.log_softmax(input, dim=1)
    _check_probability_range(input)
    row_sums = input.sum(dim=1)
    if input.numel() and not bool(((row_sums - 1).abs() <= 1e-3).all()):
        raise ValueError(
            "input must hold probabilities whose rows sum to 1 (pass from_logits=True for "
            f"logits); got row sums in [{float(row_sums.min()):g}, {float(row_sums.max()):g}]"
        )
    return input.clamp_min(torch.finfo(input.dtype).tiny).log()


def _check_scores(x: object, name: str, ndim: int | None) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor; got dtype {x.dtype}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions; got shape {tuple(x.shape)}")
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf values")
    return x


def _check_probability_range(x: Tensor, name: str = "input") -> None:
    if x.numel() and not bool(((x >= 0) & (x <= 1)).all()):
        raise ValueError(
            f"{name} must hold probabilities in [0, 1] (pass from_logits=True for logits); "
            f"got values in [{float(x.min()):g}, {float(x.max()):g}]"
        )


def _check_base(base: object) -> float:
    base = check_positive(base, "base")
    if base == 1:
        raise ValueError("base must be > 0 and != 1; got 1")
    return base
