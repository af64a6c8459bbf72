"""Conformance suite for contrastive (pair) losses ``fn(x1, x2, same)``: :func:`check_pair_loss`
runs the module-level checks of :data:`PAIR_CHECKS` on a :class:`PairCase` (see
:mod:`tripletlab.testing.explicit` for the families of checks).

Example:
    >>> from tripletlab.functional import contrastive_loss
    >>> sorted(check_pair_loss(contrastive_loss).passed)[:3]
    ['empty_batch', 'gradients', 'inactive_zero']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from tripletlab.testing.definitions import (
    distance,
    distance_grad,
    pair_definition,
    reduce_values,
    reduction_scale,
)
from tripletlab.testing.suite import (
    ConformanceReport,
    assert_close,
    empty_result,
    grads_of,
    label_of,
    repeated_twice,
    run_checks,
)

__all__ = ["PAIR_CHECKS", "PairCase", "check_pair_loss"]

#: Pairs per generated batch: enough for active and inactive ones of each kind.
_BATCH = 24
#: Generated negatives keep this distance from the margin, where no derivative exists.
_KINK_GAP = 1e-3

LossFn = Callable[[Tensor, Tensor, Tensor], Tensor]


@dataclass
class PairCase:
    """A pair loss under test, its settings and the generated pairs (``d`` their distances)."""

    fn: LossFn
    form: str
    metric: str
    margin: float
    reduction: str
    dtype: torch.dtype
    atol: float
    rtol: float
    generator: torch.Generator
    x1: Tensor
    x2: Tensor
    same: Tensor
    d: Tensor

    @property
    def want_values(self) -> Tensor:
        return pair_definition(self.x1, self.x2, self.same, self.margin, self.form, self.metric)

    def close(self, got: Tensor, want: Tensor, what: str) -> None:
        assert_close(got, want, what, self.atol, self.rtol)


def _random_pairs(
    g: torch.Generator, dim: int, dtype: torch.dtype, margin: float, form: str, metric: str
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Pairs at a spread of distances (every third one positive), none of the negatives within
    ``_KINK_GAP`` of the margin."""
    x1 = torch.randn(_BATCH, dim, generator=g, dtype=dtype)
    scale = torch.linspace(0.05, 1.5, _BATCH, dtype=dtype)[:, None] / dim**0.5
    x2 = x1 + scale * torch.randn(_BATCH, dim, generator=g, dtype=dtype)
    same = (torch.arange(_BATCH) % 3 == 0).long()
    d = distance(x1, x2, metric)
    gap = (margin - d).abs() if form == "hadsell" else (margin - d**2).abs()
    keep = (gap > _KINK_GAP) | (same == 1)
    return x1[keep], x2[keep], same[keep], d[keep]


def check_pair_value(case: PairCase) -> None:
    """The reduced loss equals the definition."""
    got = case.fn(case.x1, case.x2, case.same)
    case.close(got, reduce_values(case.want_values, case.reduction), "loss")


def check_pair_nonnegative(case: PairCase) -> None:
    """Every loss value is ≥ 0."""
    out = case.fn(case.x1, case.x2, case.same).detach()
    if bool((out < 0).any()):
        raise AssertionError(f"negative loss {float(out.min()):.3g}")


def check_pair_inactive_zero(case: PairCase) -> None:
    """Negatives beyond the margin: 0 loss, 0 gradient."""
    x1, metric, margin = case.x1, case.metric, case.margin
    if metric == "cosine" and margin > 2:
        return  # every cosine distance is ≤ 2: no negative can be beyond such a margin
    far = -x1 if metric == "cosine" else x1 + 10 * (1 + margin) * torch.sign(x1)
    out, grads = grads_of(case.fn, (x1, far), torch.zeros_like(case.same))
    if bool((out != 0).any()):
        raise AssertionError(f"negatives beyond the margin give loss {out.flatten()[:4].tolist()}")
    if any(bool((grad != 0).any()) for grad in grads):
        raise AssertionError("negatives beyond the margin give a nonzero gradient")


def check_pair_positive_zero(case: PairCase) -> None:
    """Identical positive pairs: 0 loss and a finite zero gradient."""
    x1 = case.x1
    out, grads = grads_of(case.fn, (x1, x1.clone()), torch.ones_like(case.same))
    zeros = torch.zeros(len(x1), dtype=case.dtype)
    case.close(out, reduce_values(zeros, case.reduction), "identical positives")
    for label, grad in zip(("x1", "x2"), grads, strict=True):
        case.close(grad, torch.zeros_like(grad), f"gradient for {label} at identical positives")


def check_pair_gradients(case: PairCase) -> None:
    """∂ℓ/∂x1 = c·∂d/∂x1 with c = 2d for positives and −2[m − d]₊ (hadsell) or
    −2d·1[d² < m] (squared) for negatives, scaled by the reduction."""
    x1, x2, d, margin = case.x1, case.x2, case.d, case.margin
    _, (g1, g2) = grads_of(case.fn, (x1, x2), case.same)
    y = case.same.to(case.dtype)
    if case.form == "hadsell":
        neg = -2 * (margin - d).clamp_min(0)
    else:
        neg = -2 * d * ((margin - d**2) > 0).to(case.dtype)
    c = (y * 2 * d + (1 - y) * neg) * reduction_scale(case.want_values, case.reduction)
    case.close(g1, c[:, None] * distance_grad(x1, x2, case.metric), "d/d x1")
    case.close(g2, c[:, None] * distance_grad(x2, x1, case.metric), "d/d x2")


def check_pair_symmetry(case: PairCase) -> None:
    """Swapping x1 and x2 changes nothing."""
    want = case.fn(case.x1, case.x2, case.same).detach().to(case.dtype)
    case.close(case.fn(case.x2, case.x1, case.same), want, "loss with x1, x2 swapped")


def check_pair_permutation(case: PairCase) -> None:
    """Permuting the pairs permutes ``none`` output and leaves a reduced loss unchanged."""
    x1, x2, same = case.x1, case.x2, case.same
    perm = torch.randperm(len(x1), generator=case.generator)
    base, permuted = (
        case.fn(x1, x2, same).detach(),
        case.fn(x1[perm], x2[perm], same[perm]).detach(),
    )
    case.close(permuted, base[perm] if case.reduction == "none" else base, "permuted loss")


def check_pair_reduction(case: PairCase) -> None:
    """The batch repeated twice: same mean, twice the sum, the ``none`` vector repeated."""
    x1, x2, same = case.x1, case.x2, case.same
    once = case.fn(x1, x2, same).detach()
    twice = case.fn(torch.cat([x1, x1]), torch.cat([x2, x2]), torch.cat([same, same])).detach()
    want = repeated_twice(once, case.reduction)
    case.close(twice, want.to(case.dtype), "loss of the batch repeated twice")


def check_pair_empty_batch(case: PairCase) -> None:
    """An empty batch gives 0 (not NaN) and no exception."""
    out = case.fn(case.x1[:0], case.x2[:0], case.same[:0]).detach()
    case.close(out, empty_result(case.reduction, case.dtype), "loss of an empty batch")


#: The checks of :func:`check_pair_loss`, by name, in the order they run.
PAIR_CHECKS: dict[str, Callable[[PairCase], None]] = {
    "value": check_pair_value,
    "nonnegative": check_pair_nonnegative,
    "inactive_zero": check_pair_inactive_zero,
    "positive_zero": check_pair_positive_zero,
    "gradients": check_pair_gradients,
    "symmetry": check_pair_symmetry,
    "permutation": check_pair_permutation,
    "reduction": check_pair_reduction,
    "empty_batch": check_pair_empty_batch,
}


def check_pair_loss(
    fn: LossFn,
    *,
    form: str = "hadsell",
    metric: str = "euclidean",
    margin: float = 1.0,
    reduction: str = "mean",
    dtype: torch.dtype = torch.float64,
    dim: int = 8,
    atol: float = 1e-7,
    rtol: float = 1e-6,
    check_empty: bool = True,
    seed: int = 0,
    raise_on_failure: bool = True,
    name: str | None = None,
) -> ConformanceReport:
    """Check a contrastive (pair) loss ``fn(x1, x2, same)`` against the definition.

    ``hadsell``: ``ℓ = y·d² + (1 − y)·[m − d]₊²``; ``squared``: ``ℓ = y·d² + (1 − y)·[m − d²]₊``;
    ``d`` = ``metric`` distance, ``y`` = ``same`` (0/1). The checks are :data:`PAIR_CHECKS`
    (the empty batch only with ``check_empty``); the arguments are those of
    :func:`check_triplet_loss`.

    Example:
        >>> from tripletlab.functional import contrastive_loss
        >>> check_pair_loss(contrastive_loss).ok
        True
    """
    g = torch.Generator().manual_seed(seed)
    x1, x2, same, d = _random_pairs(g, dim, dtype, margin, form, metric)
    case = PairCase(fn, form, metric, margin, reduction, dtype, atol, rtol, g, x1, x2, same, d)
    checks = {k: v for k, v in PAIR_CHECKS.items() if check_empty or k != "empty_batch"}
    report = run_checks(ConformanceReport(label_of(fn, name)), checks, case)
    return report.raise_if_failed() if raise_on_failure else report
