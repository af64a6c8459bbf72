"""Conformance suites for explicit-triplet and pair losses.

:func:`check_triplet_loss` and :func:`check_pair_loss` take *any* implementation — tripletlab's,
torch's, your own — and check it against the written definitions, independently of
tripletlab's code: the distances, hinge and hand-derived gradients are restated here row by
row. Each check is named; the result is a :class:`ConformanceReport`, and by default an
:class:`AssertionError` listing every failed check is raised.

Checks of :func:`check_triplet_loss` (``fn(anchor, positive, negative) -> loss``):

* ``value``            — the reduced loss equals the definition on random triplets (a mix of
  active and inactive ones);
* ``nonnegative``      — every loss value is ≥ 0;
* ``inactive_zero``    — (hinge only) triplets with ``d_an > d_ap + margin`` give exactly 0
  loss and exactly zero gradients;
* ``gradients``        — the gradients with respect to a, p and n equal the hand-derived ones
  (sqeuclidean: ∂a = 2(n − p)h', ∂p = −2(a − p)h', ∂n = 2(a − n)h', and their euclidean /
  cosine counterparts), scaled by the reduction;
* ``permutation``      — permuting the triplets permutes ``"none"`` output and leaves the
  reduced loss unchanged;
* ``reduction``        — the batch repeated twice gives the same ``mean``/``mean_active``,
  twice the ``sum``, the ``none`` vector repeated; the output shape matches the reduction;
* ``identical_points`` — a = p = n gives ``h(margin)`` and finite gradients (no NaN);
* ``empty_batch``      — an empty batch gives 0 (not NaN) and no exception.

:func:`check_pair_loss` (``fn(x1, x2, same) -> loss``) checks the same families for the
contrastive loss, plus ``symmetry`` (swapping x1 and x2 changes nothing) and
``positive_zero`` (identical positive pairs give 0 loss and zero gradient).

Each check is a module-level function ``check_triplet_<name>(case)`` /
``check_pair_<name>(case)`` of a :class:`TripletCase` / :class:`PairCase` (the
implementation, its settings and the generated inputs), listed in :data:`TRIPLET_CHECKS` and
:data:`PAIR_CHECKS`; they can be run one by one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from tripletlab.testing.definitions import (
    distance,
    distance_grad,
    hinge,
    hinge_grad,
    pair_definition,
    reduce_values,
    reduction_scale,
    triplet_definition,
)
from tripletlab.testing.pairs import PAIR_CHECKS, PairCase, check_pair_loss
from tripletlab.testing.suite import (
    ConformanceReport,
    assert_close,
    empty_result,
    grads_of,
    label_of,
    repeated_twice,
    run_checks,
)

__all__ = [
    "PAIR_CHECKS",
    "TRIPLET_CHECKS",
    "ConformanceReport",
    "PairCase",
    "TripletCase",
    "check_pair_loss",
    "check_triplet_loss",
    "pair_definition",
    "triplet_definition",
]

#: Triplets and pairs per generated batch: enough for active and inactive ones of each kind.
_BATCH = 24
#: Generated inputs keep this distance from the hinge's kink, where no derivative exists.
_KINK_GAP = 1e-3

LossFn = Callable[[Tensor, Tensor, Tensor], Tensor]


# --------------------------------------------------------------------------- triplets


@dataclass
class TripletCase:
    """An explicit-triplet loss under test, its settings and the generated triplets."""

    fn: LossFn
    metric: str
    margin: float
    smoothing: float | None
    reduction: str
    dtype: torch.dtype
    atol: float
    rtol: float
    generator: torch.Generator
    a: Tensor
    p: Tensor
    n: Tensor

    @property
    def want_values(self) -> Tensor:
        return triplet_definition(self.a, self.p, self.n, self.margin, self.metric, self.smoothing)

    def close(self, got: Tensor, want: Tensor, what: str) -> None:
        assert_close(got, want, what, self.atol, self.rtol)


def _resolve_metric(metric: str | None, squared: bool | None) -> str:
    if squared is None:
        return metric or "sqeuclidean"
    implied = "sqeuclidean" if squared else "euclidean"
    if metric is not None and metric != implied:
        raise ValueError(f"squared={squared} contradicts metric={metric!r}")
    return implied


def _random_triplets(
    g: torch.Generator, n: int, dim: int, dtype: torch.dtype, margin: float, metric: str
) -> tuple[Tensor, Tensor, Tensor]:
    """Triplets with a spread of d_an − d_ap so that some are active and some are not, and no
    triplet sits within ``_KINK_GAP`` of the hinge's kink."""
    a = torch.randn(n * 2, dim, generator=g, dtype=dtype)
    p = a + 0.5 * torch.randn(n * 2, dim, generator=g, dtype=dtype)
    spread = torch.linspace(0.1, 2.5, n * 2, dtype=dtype)[:, None]
    n_ = a + spread * torch.randn(n * 2, dim, generator=g, dtype=dtype)
    x = distance(a, p, metric) - distance(a, n_, metric) + margin
    keep = (x.abs() > _KINK_GAP).nonzero().flatten()[:n]
    return a[keep], p[keep], n_[keep]


def check_triplet_value(case: TripletCase) -> None:
    """The reduced loss equals the definition."""
    case.close(
        case.fn(case.a, case.p, case.n), reduce_values(case.want_values, case.reduction), "loss"
    )


def check_triplet_nonnegative(case: TripletCase) -> None:
    """Every loss value is ≥ 0."""
    out = case.fn(case.a, case.p, case.n).detach()
    if bool((out < 0).any()):
        raise AssertionError(f"negative loss {float(out.min()):.3g}")


def check_triplet_inactive_zero(case: TripletCase) -> None:
    """(hinge) Triplets with d_an > d_ap + margin give exactly 0 loss and zero gradients."""
    a, metric, margin = case.a, case.metric, case.margin
    if metric == "cosine" and margin >= 2:
        return  # cosine distances are ≤ 2: no triplet can be inactive with such a margin
    # p close to a, n far away: d_an ≫ d_ap + margin for every metric.
    easy_n = -a * 3 if metric == "cosine" else a + 10 * (1 + margin) * torch.sign(a)
    easy_p = a + 1e-3 * torch.ones_like(a)
    out, grads = grads_of(case.fn, (a, easy_p, easy_n))
    if bool((out != 0).any()):
        raise AssertionError(f"inactive triplets give loss {out.flatten()[:4].tolist()}")
    for label, grad in zip("apn", grads, strict=True):
        if bool((grad != 0).any()):
            raise AssertionError(f"inactive triplets give a nonzero gradient for {label}")


def check_triplet_gradients(case: TripletCase) -> None:
    """The gradients equal the hand-derived ones, scaled by the reduction."""
    a, p, n, metric = case.a, case.p, case.n, case.metric
    _, (ga, gp, gn) = grads_of(case.fn, (a, p, n))
    x = distance(a, p, metric) - distance(a, n, metric) + case.margin
    scale = reduction_scale(case.want_values, case.reduction)
    w = (hinge_grad(x, case.smoothing) * scale)[:, None]
    d_ap_a, d_ap_p = distance_grad(a, p, metric), distance_grad(p, a, metric)
    d_an_a, d_an_n = distance_grad(a, n, metric), distance_grad(n, a, metric)
    case.close(ga, w * (d_ap_a - d_an_a), "d/d anchor")
    case.close(gp, w * d_ap_p, "d/d positive")
    case.close(gn, -w * d_an_n, "d/d negative")


def check_triplet_permutation(case: TripletCase) -> None:
    """Permuting the triplets permutes ``none`` output and leaves a reduced loss unchanged."""
    a, p, n = case.a, case.p, case.n
    perm = torch.randperm(len(a), generator=case.generator)
    base, permuted = case.fn(a, p, n).detach(), case.fn(a[perm], p[perm], n[perm]).detach()
    case.close(permuted, base[perm] if case.reduction == "none" else base, "permuted loss")


def check_triplet_reduction(case: TripletCase) -> None:
    """The batch repeated twice: same mean, twice the sum, the ``none`` vector repeated."""
    once = case.fn(case.a, case.p, case.n).detach()
    twice = case.fn(*(torch.cat([t, t]) for t in (case.a, case.p, case.n))).detach()
    expected_dim = 1 if case.reduction == "none" else 0
    if once.dim() != expected_dim:
        raise AssertionError(
            f"reduction={case.reduction!r} should give a {expected_dim}-dim output; got shape "
            f"{tuple(once.shape)}"
        )
    want = repeated_twice(once, case.reduction)
    case.close(twice, want.to(case.dtype), "loss of the batch repeated twice")


def check_triplet_identical_points(case: TripletCase) -> None:
    """a = p = n gives h(margin) and finite gradients."""
    same = case.a[:4]
    out, grads = grads_of(case.fn, (same, same, same))
    margins = torch.full((4,), case.margin, dtype=case.dtype)
    case.close(
        out, reduce_values(hinge(margins, case.smoothing), case.reduction), "loss at a = p = n"
    )
    for label, grad in zip("apn", grads, strict=True):
        if not bool(torch.isfinite(grad).all()):
            raise AssertionError(f"non-finite gradient for {label} at a = p = n")


def check_triplet_empty_batch(case: TripletCase) -> None:
    """An empty batch gives 0 (not NaN) and no exception."""
    empty = case.a[:0]
    out = case.fn(empty, empty, empty).detach()
    case.close(out, empty_result(case.reduction, case.dtype), "loss of an empty batch")


#: The checks of :func:`check_triplet_loss`, by name, in the order they run.
TRIPLET_CHECKS: dict[str, Callable[[TripletCase], None]] = {
    "value": check_triplet_value,
    "nonnegative": check_triplet_nonnegative,
    "inactive_zero": check_triplet_inactive_zero,
    "gradients": check_triplet_gradients,
    "permutation": check_triplet_permutation,
    "reduction": check_triplet_reduction,
    "identical_points": check_triplet_identical_points,
    "empty_batch": check_triplet_empty_batch,
}


def check_triplet_loss(
    fn: LossFn,
    *,
    metric: str | None = None,
    squared: bool | None = None,
    margin: float = 0.2,
    smoothing: float | None = None,
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
    """Check an explicit-triplet loss ``fn(anchor, positive, negative)`` against the definition.

    The definition is ``ℓ_i = h(D(a_i, p_i) − D(a_i, n_i) + margin)`` reduced by ``reduction``,
    with ``D`` named by ``metric`` (or ``squared=True/False`` for squared / plain euclidean)
    and ``h`` the hinge (``smoothing`` None) or ``μ·softplus(x/μ)``. ``fn`` must already be
    configured with these settings; the suite only tells the checker what to expect.

    Args:
        fn: the implementation under test.
        metric: ``"sqeuclidean"`` (default), ``"euclidean"`` or ``"cosine"``.
        squared: shorthand for the euclidean family (True → sqeuclidean, False → euclidean).
        margin, smoothing, reduction: the settings ``fn`` uses.
        dtype: dtype of the generated inputs (float64 for tight tolerances).
        dim: embedding dimension of the generated inputs.
        atol, rtol: tolerances. An implementation that adds ``eps`` inside the norm (torch's
            ``triplet_margin_loss``, eps = 1e-6) differs by up to ``eps·√dim`` per distance:
            use ``atol ≈ 1e-5``.
        check_empty: include the empty-batch check.
        seed: seed of the generated inputs.
        raise_on_failure: raise an AssertionError listing the failures (default); otherwise
            just return the report.
        name: label of the report.

    Returns:
        A :class:`ConformanceReport`.

    Example:
        >>> from tripletlab.functional import triplet_margin_loss
        >>> check_triplet_loss(triplet_margin_loss).ok
        True
    """
    metric = _resolve_metric(metric, squared)
    g = torch.Generator().manual_seed(seed)
    a, p, n = _random_triplets(g, _BATCH, dim, dtype, margin, metric)
    case = TripletCase(fn, metric, margin, smoothing, reduction, dtype, atol, rtol, g, a, p, n)
    want = case.want_values
    if not smoothing and not (bool((want > 0).any()) and bool((want == 0).any())):
        raise RuntimeError("internal: the generated triplets are not a mix of active/inactive")
    skip = {"inactive_zero"} if smoothing else set()
    if not check_empty:
        skip.add("empty_batch")
    checks = {k: v for k, v in TRIPLET_CHECKS.items() if k not in skip}
    report = run_checks(ConformanceReport(label_of(fn, name)), checks, case)
    return report.raise_if_failed() if raise_on_failure else report
