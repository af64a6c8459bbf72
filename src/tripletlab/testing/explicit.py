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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

_UNIT_EPS = 1e-12


@dataclass
class ConformanceReport:
    """The outcome of a conformance suite: the names of passed checks and failure messages."""

    name: str
    passed: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def raise_if_failed(self) -> ConformanceReport:
        if self.failures:
            lines = "\n".join(f"  - {f}" for f in self.failures)
            raise AssertionError(
                f"{self.name}: {len(self.failures)} conformance check(s) failed:\n{lines}"
            )
        return self

    def __str__(self) -> str:
        status = "ok" if self.ok else f"{len(self.failures)} failed"
        return f"{self.name}: {len(self.passed)} passed, {status}"


# --------------------------------------------------------------------------- definitions


def _distance(x: Tensor, y: Tensor, metric: str) -> Tensor:
    if metric == "cosine":
        xn, yn = x.norm(dim=1), y.norm(dim=1)
        dot = (x * y).sum(dim=1)
        defined = (xn > 0) & (yn > 0)
        cos = torch.where(defined, dot / (xn * yn).clamp_min(_UNIT_EPS), torch.zeros_like(dot))
        return 1 - cos
    squared = ((x - y) ** 2).sum(dim=1)
    return squared if metric == "sqeuclidean" else squared.sqrt()


def _distance_grad(x: Tensor, y: Tensor, metric: str) -> Tensor:
    """∂D(x, y)/∂x, row by row."""
    if metric == "sqeuclidean":
        return 2 * (x - y)
    if metric == "euclidean":
        diff = x - y
        norm = diff.norm(dim=1, keepdim=True)
        return torch.where(norm > 0, diff / norm.clamp_min(_UNIT_EPS), torch.zeros_like(diff))
    xn, yn = x.norm(dim=1, keepdim=True), y.norm(dim=1, keepdim=True)
    cos = (x * y).sum(dim=1, keepdim=True) / (xn * yn).clamp_min(_UNIT_EPS)
    grad_cos = y / (xn * yn).clamp_min(_UNIT_EPS) - cos * x / (xn * xn).clamp_min(_UNIT_EPS)
    return torch.where((xn > 0) & (yn > 0), -grad_cos, torch.zeros_like(grad_cos))


def _hinge(x: Tensor, smoothing: float | None) -> Tensor:
    if not smoothing:
        return x.clamp_min(0)
    return smoothing * torch.nn.functional.softplus(x / smoothing)


def _hinge_grad(x: Tensor, smoothing: float | None) -> Tensor:
    if not smoothing:
        return (x > 0).to(x.dtype)
    return torch.sigmoid(x / smoothing)


def _reduce(values: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return values
    if reduction == "sum":
        return values.sum()
    if reduction == "mean":
        return values.sum() / max(values.numel(), 1)
    return values.sum() / max(int((values > 0).sum()), 1)


def _reduction_scale(values: Tensor, reduction: str) -> float:
    """d(reduced)/d(value_i) for the reductions (``none`` is summed by the checker)."""
    if reduction in ("none", "sum"):
        return 1.0
    if reduction == "mean":
        return 1.0 / max(values.numel(), 1)
    return 1.0 / max(int((values > 0).sum()), 1)


def triplet_definition(
    a: Tensor, p: Tensor, n: Tensor, margin: float, metric: str, smoothing: float | None
) -> Tensor:
    """Per-triplet losses ``h(D(a, p) − D(a, n) + margin)`` straight from the definition."""
    return _hinge(_distance(a, p, metric) - _distance(a, n, metric) + margin, smoothing)


def pair_definition(x1: Tensor, x2: Tensor, same: Tensor, margin: float, form: str, metric: str):
    """Per-pair contrastive losses straight from the definition."""
    d = _distance(x1, x2, metric)
    y = same.to(d.dtype)
    negative = (margin - d).clamp_min(0) ** 2 if form == "hadsell" else (margin - d**2).clamp_min(0)
    return y * d**2 + (1 - y) * negative


# --------------------------------------------------------------------------- the runner


class _Suite:
    def __init__(self, name: str, atol: float, rtol: float) -> None:
        self.report = ConformanceReport(name)
        self.atol, self.rtol = atol, rtol

    def run(self, check: str, body: Callable[[], None]) -> None:
        try:
            body()
        except AssertionError as err:
            self.report.failures.append(f"{check}: {err}")
        except Exception as err:  # an implementation that crashes fails the check
            self.report.failures.append(f"{check}: raised {type(err).__name__}: {err}")
        else:
            self.report.passed.append(check)

    def close(self, got: Tensor, want: Tensor, what: str) -> None:
        got = torch.as_tensor(got).detach().to(want.dtype)
        if got.shape != want.shape:
            raise AssertionError(f"{what}: shape {tuple(got.shape)}, expected {tuple(want.shape)}")
        if not torch.isfinite(got).all():
            raise AssertionError(f"{what}: non-finite values {got.flatten()[:6].tolist()}")
        err = (got - want).abs()
        bound = self.atol + self.rtol * want.abs()
        if bool((err > bound).any()):
            raise AssertionError(
                f"{what}: max abs error {float(err.max()):.3g} exceeds atol={self.atol:g}, "
                f"rtol={self.rtol:g}"
            )


def _repeated_twice(once: Tensor, reduction: str) -> Tensor:
    """What a loss gives on its batch repeated twice, from what it gives on the batch once."""
    if reduction == "none":
        return torch.cat([once, once])
    return 2 * once if reduction == "sum" else once


def _grads(
    fn: Callable[..., Tensor], inputs: tuple[Tensor, ...], *rest: Tensor
) -> tuple[Tensor, tuple[Tensor, ...]]:
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    out = fn(*leaves, *rest)
    out.sum().backward()
    zero = [torch.zeros_like(x) for x in leaves]
    return out.detach(), tuple(
        x.grad if x.grad is not None else z for x, z in zip(leaves, zero, strict=True)
    )


def _label(fn: object, name: str | None) -> str:
    return name or str(getattr(fn, "__name__", type(fn).__name__))


def _resolve_metric(metric: str | None, squared: bool | None) -> str:
    if squared is None:
        return metric or "sqeuclidean"
    implied = "sqeuclidean" if squared else "euclidean"
    if metric is not None and metric != implied:
        raise ValueError(f"squared={squared} contradicts metric={metric!r}")
    return implied


def _random_triplets(g: torch.Generator, n: int, dim: int, dtype, margin: float, metric: str):
    """Triplets with a spread of d_an − d_ap so that some are active and some are not, and no
    triplet sits within 1e-3 of the hinge's kink (where the derivative is not defined)."""
    a = torch.randn(n * 2, dim, generator=g, dtype=dtype)
    p = a + 0.5 * torch.randn(n * 2, dim, generator=g, dtype=dtype)
    spread = torch.linspace(0.1, 2.5, n * 2, dtype=dtype)[:, None]
    n_ = a + spread * torch.randn(n * 2, dim, generator=g, dtype=dtype)
    x = _distance(a, p, metric) - _distance(a, n_, metric) + margin
    keep = (x.abs() > 1e-3).nonzero().flatten()[:n]
    return a[keep], p[keep], n_[keep]


def check_triplet_loss(
    fn: Callable[[Tensor, Tensor, Tensor], Tensor],
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
    suite = _Suite(_label(fn, name), atol, rtol)
    g = torch.Generator().manual_seed(seed)
    a, p, n = _random_triplets(g, 24, dim, dtype, margin, metric)
    want_values = triplet_definition(a, p, n, margin, metric, smoothing)
    if not smoothing and not (bool((want_values > 0).any()) and bool((want_values == 0).any())):
        raise RuntimeError("internal: the generated triplets are not a mix of active/inactive")

    def value() -> None:
        suite.close(fn(a, p, n), _reduce(want_values, reduction), "loss")

    def nonnegative() -> None:
        out = fn(a, p, n).detach()
        if bool((out < 0).any()):
            raise AssertionError(f"negative loss {float(out.min()):.3g}")

    def inactive_zero() -> None:
        if metric == "cosine" and margin >= 2:
            return  # cosine distances are ≤ 2: no triplet can be inactive with such a margin
        # p close to a, n far away: d_an ≫ d_ap + margin for every metric.
        easy_n = -a * 3 if metric == "cosine" else a + 10 * (1 + margin) * torch.sign(a)
        easy_p = a + 1e-3 * torch.ones_like(a)
        out, grads = _grads(fn, (a, easy_p, easy_n))
        if bool((out != 0).any()):
            raise AssertionError(f"inactive triplets give loss {out.flatten()[:4].tolist()}")
        for label, grad in zip("apn", grads, strict=True):
            if bool((grad != 0).any()):
                raise AssertionError(f"inactive triplets give a nonzero gradient for {label}")

    def gradients() -> None:
        _, (ga, gp, gn) = _grads(fn, (a, p, n))
        x = _distance(a, p, metric) - _distance(a, n, metric) + margin
        w = (_hinge_grad(x, smoothing) * _reduction_scale(want_values, reduction))[:, None]
        d_ap_a, d_ap_p = _distance_grad(a, p, metric), _distance_grad(p, a, metric)
        d_an_a, d_an_n = _distance_grad(a, n, metric), _distance_grad(n, a, metric)
        suite.close(ga, w * (d_ap_a - d_an_a), "d/d anchor")
        suite.close(gp, w * d_ap_p, "d/d positive")
        suite.close(gn, -w * d_an_n, "d/d negative")

    def permutation() -> None:
        perm = torch.randperm(len(a), generator=g)
        base, permuted = fn(a, p, n).detach(), fn(a[perm], p[perm], n[perm]).detach()
        suite.close(permuted, base[perm] if reduction == "none" else base, "permuted loss")

    def reduction_semantics() -> None:
        once = fn(a, p, n).detach()
        twice = fn(*(torch.cat([t, t]) for t in (a, p, n))).detach()
        expected_dim = 1 if reduction == "none" else 0
        if once.dim() != expected_dim:
            raise AssertionError(
                f"reduction={reduction!r} should give a {expected_dim}-dim output; got shape "
                f"{tuple(once.shape)}"
            )
        want = _repeated_twice(once, reduction)
        suite.close(twice, want.to(dtype), "loss of the batch repeated twice")

    def identical_points() -> None:
        same = a[:4]
        out, grads = _grads(fn, (same, same, same))
        want = _reduce(_hinge(torch.full((4,), margin, dtype=dtype), smoothing), reduction)
        suite.close(out, want, "loss at a = p = n")
        for label, grad in zip("apn", grads, strict=True):
            if not bool(torch.isfinite(grad).all()):
                raise AssertionError(f"non-finite gradient for {label} at a = p = n")

    def empty_batch() -> None:
        empty = a[:0]
        out = fn(empty, empty, empty).detach()
        want = torch.zeros(0, dtype=dtype) if reduction == "none" else torch.zeros((), dtype=dtype)
        suite.close(out, want, "loss of an empty batch")

    suite.run("value", value)
    suite.run("nonnegative", nonnegative)
    if not smoothing:
        suite.run("inactive_zero", inactive_zero)
    suite.run("gradients", gradients)
    suite.run("permutation", permutation)
    suite.run("reduction", reduction_semantics)
    suite.run("identical_points", identical_points)
    if check_empty:
        suite.run("empty_batch", empty_batch)
    return suite.report.raise_if_failed() if raise_on_failure else suite.report


def check_pair_loss(
    fn: Callable[[Tensor, Tensor, Tensor], Tensor],
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
    ``d`` = ``metric`` distance, ``y`` = ``same`` (0/1). Checks: ``value``, ``nonnegative``,
    ``inactive_zero`` (negatives beyond the margin: 0 loss, 0 gradient), ``positive_zero``
    (identical positives: 0 loss, finite 0 gradient), ``gradients`` (hand-derived:
    ∂ℓ/∂x1 = c·∂d/∂x1 with c = 2d for positives and −2[m − d]₊ (hadsell) or
    −2d·1[d² < m] (squared) for negatives), ``symmetry``, ``permutation``, ``reduction`` and
    ``empty_batch``.

    Example:
        >>> from tripletlab.functional import contrastive_loss
        >>> check_pair_loss(contrastive_loss).ok
        True
    """
    suite = _Suite(_label(fn, name), atol, rtol)
    g = torch.Generator().manual_seed(seed)
    count = 24
    x1 = torch.randn(count, dim, generator=g, dtype=dtype)
    scale = torch.linspace(0.05, 1.5, count, dtype=dtype)[:, None] / dim**0.5
    x2 = x1 + scale * torch.randn(count, dim, generator=g, dtype=dtype)
    same = (torch.arange(count) % 3 == 0).long()
    d = _distance(x1, x2, metric)
    gap = (margin - d).abs() if form == "hadsell" else (margin - d**2).abs()
    keep = (gap > 1e-3) | (same == 1)
    x1, x2, same, d = x1[keep], x2[keep], same[keep], d[keep]
    want_values = pair_definition(x1, x2, same, margin, form, metric)

    def value() -> None:
        suite.close(fn(x1, x2, same), _reduce(want_values, reduction), "loss")

    def nonnegative() -> None:
        out = fn(x1, x2, same).detach()
        if bool((out < 0).any()):
            raise AssertionError(f"negative loss {float(out.min()):.3g}")

    def inactive_zero() -> None:
        far = -x1 if metric == "cosine" else x1 + 10 * (1 + margin) * torch.sign(x1)
        if metric == "cosine" and margin > 2:
            return  # every cosine distance is ≤ 2: no negative can be beyond such a margin
        out, grads = _grads(fn, (x1, far), torch.zeros_like(same))
        if bool((out != 0).any()):
            raise AssertionError(
                f"negatives beyond the margin give loss {out.flatten()[:4].tolist()}"
            )
        if any(bool((grad != 0).any()) for grad in grads):
            raise AssertionError("negatives beyond the margin give a nonzero gradient")

    def positive_zero() -> None:
        out, grads = _grads(fn, (x1, x1.clone()), torch.ones_like(same))
        suite.close(
            out, _reduce(torch.zeros(len(x1), dtype=dtype), reduction), "identical positives"
        )
        for label, grad in zip(("x1", "x2"), grads, strict=True):
            suite.close(
                grad, torch.zeros_like(grad), f"gradient for {label} at identical positives"
            )

    def gradients() -> None:
        _, (g1, g2) = _grads(fn, (x1, x2), same)
        y = same.to(dtype)
        if form == "hadsell":
            neg = -2 * (margin - d).clamp_min(0)
        else:
            neg = -2 * d * ((margin - d**2) > 0).to(dtype)
        c = (y * 2 * d + (1 - y) * neg) * _reduction_scale(want_values, reduction)
        suite.close(g1, c[:, None] * _distance_grad(x1, x2, metric), "d/d x1")
        suite.close(g2, c[:, None] * _distance_grad(x2, x1, metric), "d/d x2")

    def symmetry() -> None:
        suite.close(
            fn(x2, x1, same), fn(x1, x2, same).detach().to(dtype), "loss with x1, x2 swapped"
        )

    def permutation() -> None:
        perm = torch.randperm(len(x1), generator=g)
        base, permuted = fn(x1, x2, same).detach(), fn(x1[perm], x2[perm], same[perm]).detach()
        suite.close(permuted, base[perm] if reduction == "none" else base, "permuted loss")

    def reduction_semantics() -> None:
        once = fn(x1, x2, same).detach()
        twice = fn(torch.cat([x1, x1]), torch.cat([x2, x2]), torch.cat([same, same])).detach()
        want = _repeated_twice(once, reduction)
        suite.close(twice, want.to(dtype), "loss of the batch repeated twice")

    def empty_batch() -> None:
        out = fn(x1[:0], x2[:0], same[:0]).detach()
        want = torch.zeros(0, dtype=dtype) if reduction == "none" else torch.zeros((), dtype=dtype)
        suite.close(out, want, "loss of an empty batch")

    suite.run("value", value)
    suite.run("nonnegative", nonnegative)
    suite.run("inactive_zero", inactive_zero)
    suite.run("positive_zero", positive_zero)
    suite.run("gradients", gradients)
    suite.run("symmetry", symmetry)
    suite.run("permutation", permutation)
    suite.run("reduction", reduction_semantics)
    if check_empty:
        suite.run("empty_batch", empty_batch)
    return suite.report.raise_if_failed() if raise_on_failure else suite.report
