"""Conformance suite for batch (online-mining) triplet losses ``fn(embeddings, labels)``.

:func:`check_batch_triplet_loss` checks *any* implementation — tripletlab's, PML's
``TripletMarginLoss`` with or without a miner, your own — against the written definitions,
restated here densely (a (B, B, B) tensor: small batches only), independently of tripletlab's
bucketing code. Mining rules:

* ``"all"``       — every valid triplet (a, p, n): label(p) = label(a), p ≠ a, label(n) ≠ label(a);
* ``"hard"``      — per anchor, the largest d_ap and the smallest d_an (Hermans et al.);
* ``"semi_hard"`` — per (a, p), the smallest d_an > d_ap, else ``fallback`` (FaceNet).

Checks (each named in the :class:`~tripletlab.testing.ConformanceReport`):

* ``value``                — the loss equals the definition on a random P×K batch;
* ``gradient``             — its gradient equals autograd of the definition;
* ``ties``                 — integer embeddings with exact ties d_an = d_ap + m (and d_an = d_ap)
  give the definition's value: a triplet at the margin is inactive;
* ``no_positives``         — all labels distinct: loss 0, zero (not NaN) gradient;
* ``no_negatives``         — a single class: loss 0, zero gradient;
* ``no_active``            — (hinge) well separated classes: loss 0, zero gradient;
* ``identical_embeddings`` — all embeddings equal: the definition's value, finite gradient;
* ``permutation``          — permuting the batch leaves the loss unchanged;
* ``relabel``              — renaming the classes leaves the loss unchanged;
* ``float16``              — float16 input gives a finite loss close to the float32 definition;
* ``deterministic``        — the same call twice gives the same loss.

Each check is a module-level ``check_batch_<name>(case)`` of a :class:`BatchCase`, listed in
:data:`BATCH_CHECKS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from tripletlab.testing.suite import ConformanceReport, run_checks

_MINING = ("all", "hard", "semi_hard")


def batch_triplet_definition(
    embeddings: Tensor,
    labels: Tensor,
    mining: str = "all",
    margin: float = 0.2,
    metric: str = "sqeuclidean",
    smoothing: float | None = None,
    reduction: str = "mean_active",
    fallback: str = "hardest",
) -> Tensor:
    """The batch loss by its definition, densely (B³ memory: small batches only)."""
    d = _pairwise(embeddings, metric)
    n = len(labels)
    same = labels[:, None] == labels[None, :]
    positive = same & ~torch.eye(n, dtype=torch.bool, device=labels.device)
    negative = ~same
    inf = torch.tensor(float("inf"), dtype=d.dtype)
    if mining == "all":
        valid = positive[:, :, None] & negative[:, None, :]
        x = d[:, :, None] - d[:, None, :] + margin
        values = _hinge(torch.where(valid, x, 0), smoothing)[valid]
    elif mining == "hard":
        valid = positive.any(1) & negative.any(1)
        d_ap = torch.where(positive, d, -inf).max(1).values
        d_an = torch.where(negative, d, inf).min(1).values
        values = _hinge(torch.where(valid, d_ap - d_an, 0) + margin, smoothing)[valid]
    else:
        farther = negative[:, None, :] & (d[:, None, :] > d[:, :, None].detach())
        d_semi = torch.where(farther, d[:, None, :], inf).min(2).values
        found = farther.any(2)
        if fallback == "easiest":
            other = torch.where(negative, d, -inf).max(1).values
        else:
            other = torch.where(negative, d, inf).min(1).values
        d_an = torch.where(found, d_semi, other[:, None])
        valid = positive & negative.any(1)[:, None]
        if fallback == "skip":
            valid = valid & found
        d_an = torch.where(valid, d_an, 0)
        values = _hinge(torch.where(valid, d - d_an, 0) + margin, smoothing)[valid]
    zero = d.sum() * 0
    if values.numel() == 0:
        return zero
    if reduction == "sum":
        return values.sum()
    if reduction == "mean":
        return values.sum() / values.numel()
    return values.sum() / (values.detach() > 0).sum().clamp_min(1)


@dataclass
class BatchCase:
    """A batch triplet loss under test, its settings and a generated P×K batch ``x``, ``y``."""

    fn: Callable[[Tensor, Tensor], Tensor]
    mining: str
    margin: float
    metric: str
    smoothing: float | None
    reduction: str
    fallback: str
    atol: float
    rtol: float
    generator: torch.Generator
    x: Tensor
    y: Tensor

    def definition(self, x: Tensor, y: Tensor) -> Tensor:
        """The loss of ``x``, ``y`` by the definition, with this case's settings."""
        return batch_triplet_definition(
            x, y, self.mining, self.margin, self.metric, self.smoothing, self.reduction,
            self.fallback,
        )  # fmt: skip

    def close(self, got: Tensor, want: Tensor, what: str, loose: bool = False) -> None:
        """Scalars ``got`` and ``want`` agree (``loose``: to 1e-2, for float16 input)."""
        atol, rtol = (LOW_PRECISION_TOL, LOW_PRECISION_TOL) if loose else (self.atol, self.rtol)
        got = torch.as_tensor(got).detach().double().reshape(())
        want = want.detach().double().reshape(())
        if not bool(torch.isfinite(got)):
            raise AssertionError(f"{what}: not finite ({float(got)})")
        if abs(float(got - want)) > atol + rtol * abs(float(want)):
            raise AssertionError(f"{what}: got {float(got):.10g}, expected {float(want):.10g}")

    def zero_loss_zero_grad(self, x: Tensor, y: Tensor, what: str) -> None:
        """The loss of ``x``, ``y`` is 0 and its gradient exactly zero (not NaN)."""
        x = x.clone().requires_grad_()
        loss = self.fn(x, y)
        self.close(loss, torch.zeros(()), what)
        if loss.requires_grad:
            loss.backward()
        grad = x.grad if x.grad is not None else torch.zeros_like(x)
        if not bool(torch.isfinite(grad).all()) or float(grad.abs().max()) != 0.0:
            raise AssertionError(f"{what}: gradient is not exactly zero")


#: Tolerance of the float16 check (float16 has ~3 significant digits).
LOW_PRECISION_TOL = 1e-2


def check_batch_value(case: BatchCase) -> None:
    """The loss equals the definition on a random P×K batch."""
    case.close(case.fn(case.x, case.y), case.definition(case.x, case.y), "loss")


def check_batch_gradient(case: BatchCase) -> None:
    """The gradient equals autograd of the definition."""
    a, b = case.x.clone().requires_grad_(), case.x.clone().requires_grad_()
    case.fn(a, case.y).backward()
    case.definition(b, case.y).backward()
    got = a.grad if a.grad is not None else torch.zeros_like(a)
    want = b.grad if b.grad is not None else torch.zeros_like(b)
    if not torch.allclose(got.double(), want, atol=case.atol, rtol=case.rtol):
        err = float((got.double() - want).abs().max())
        raise AssertionError(f"gradient differs from the definition's by up to {err:.3g}")


def check_batch_ties(case: BatchCase) -> None:
    """Exact ties d_an = d_ap + m (and d_an = d_ap) give the definition's value."""
    # v and −v: the batch mean is exactly 0, so implementations that centre the batch
    # before a GEMM (as tripletlab does) still compute these integer distances exactly
    half = torch.randint(-2, 3, (6, 2), generator=case.generator).double()
    xi = torch.cat([half, -half])
    yi = torch.arange(12) % 3
    case.close(case.fn(xi, yi), case.definition(xi, yi), "loss with exact ties")


def check_batch_no_positives(case: BatchCase) -> None:
    """All labels distinct: loss 0, zero gradient."""
    case.zero_loss_zero_grad(case.x, torch.arange(len(case.y)), "no positives")


def check_batch_no_negatives(case: BatchCase) -> None:
    """A single class: loss 0, zero gradient."""
    case.zero_loss_zero_grad(case.x, torch.zeros_like(case.y), "no negatives")


def check_batch_no_active(case: BatchCase) -> None:
    """(hinge) Well separated classes: loss 0, zero gradient."""
    if case.smoothing:
        return
    noise = 1e-3 * torch.randn(case.x.shape, generator=case.generator).double()
    case.zero_loss_zero_grad(case.y[:, None].double() * 1e3 + noise, case.y, "no active triplet")


def check_batch_identical_embeddings(case: BatchCase) -> None:
    """All embeddings equal: the definition's value and a finite gradient."""
    same = torch.ones_like(case.x).requires_grad_()
    loss = case.fn(same, case.y)
    case.close(loss, case.definition(same.detach(), case.y), "identical embeddings")
    loss.backward()
    if same.grad is not None and not bool(torch.isfinite(same.grad).all()):
        raise AssertionError("identical embeddings: non-finite gradient")


def check_batch_permutation(case: BatchCase) -> None:
    """Permuting the batch leaves the loss unchanged."""
    perm = torch.randperm(len(case.y), generator=case.generator)
    case.close(case.fn(case.x[perm], case.y[perm]), case.fn(case.x, case.y), "permuted batch")


def check_batch_relabel(case: BatchCase) -> None:
    """Renaming the classes leaves the loss unchanged."""
    case.close(case.fn(case.x, case.y * 7 + 3), case.fn(case.x, case.y), "renamed classes")


def check_batch_float16(case: BatchCase) -> None:
    """float16 input gives a finite loss close to the float32 definition."""
    half = case.x.half()
    got = case.fn(half, case.y)
    case.close(got, case.definition(half.double(), case.y), "float16 input", loose=True)


def check_batch_deterministic(case: BatchCase) -> None:
    """The same call twice gives the same loss."""
    first, second = case.fn(case.x, case.y).detach(), case.fn(case.x, case.y).detach()
    if not torch.equal(first, second):
        raise AssertionError("two identical calls gave different losses")


#: The checks of :func:`check_batch_triplet_loss`, by name, in the order they run.
BATCH_CHECKS: dict[str, Callable[[BatchCase], None]] = {
    "value": check_batch_value,
    "gradient": check_batch_gradient,
    "ties": check_batch_ties,
    "no_positives": check_batch_no_positives,
    "no_negatives": check_batch_no_negatives,
    "no_active": check_batch_no_active,
    "identical_embeddings": check_batch_identical_embeddings,
    "permutation": check_batch_permutation,
    "relabel": check_batch_relabel,
    "float16": check_batch_float16,
    "deterministic": check_batch_deterministic,
}


def check_batch_triplet_loss(
    fn: Callable[[Tensor, Tensor], Tensor],
    *,
    mining: str = "all",
    margin: float = 0.2,
    metric: str = "sqeuclidean",
    smoothing: float | None = None,
    reduction: str = "mean_active",
    fallback: str = "hardest",
    atol: float = 1e-6,
    rtol: float = 1e-5,
    seed: int = 0,
    checks: tuple[str, ...] | None = None,
    raise_on_failure: bool = True,
    name: str | None = None,
) -> ConformanceReport:
    """Check a batch triplet loss ``fn(embeddings, labels) -> loss`` against the definition.

    ``fn`` must already be configured with the settings given here (``mining``, ``margin``,
    ``metric``, ``smoothing``, ``reduction``, ``fallback``); the suite only tells the checker
    what to expect. Inputs are float64 except in the ``float16`` check.

    Args:
        fn: the implementation under test.
        mining: ``"all"``, ``"hard"`` or ``"semi_hard"`` (see the module docstring).
        margin, metric, smoothing, reduction, fallback: the settings ``fn`` uses;
            ``reduction`` is ``"mean"``, ``"mean_active"`` or ``"sum"``.
        atol, rtol: tolerances of the float64 comparisons.
        seed: seed of the generated batches.
        checks: run only these checks (default: all).
        raise_on_failure: raise an AssertionError listing the failures (default).
        name: label of the report.

    Returns:
        A :class:`~tripletlab.testing.ConformanceReport`.

    Example:
        >>> from tripletlab.functional import batch_all_triplet_loss
        >>> check_batch_triplet_loss(batch_all_triplet_loss).ok
        True
    """
    if mining not in _MINING:
        raise ValueError(f"mining must be one of {_MINING}; got {mining!r}")
    g = torch.Generator().manual_seed(seed)
    x, y = _pk_batch(g, 4, 3, 6, margin, metric)
    case = BatchCase(
        fn, mining, margin, metric, smoothing, reduction, fallback, atol, rtol, g, x, y
    )
    chosen = {k: v for k, v in BATCH_CHECKS.items() if checks is None or k in checks}
    label = name or str(getattr(fn, "__name__", type(fn).__name__))
    report = run_checks(ConformanceReport(label), chosen, case)
    return report.raise_if_failed() if raise_on_failure else report


def _pk_batch(
    g: torch.Generator, p: int, k: int, dim: int, margin: float, metric: str
) -> tuple[Tensor, Tensor]:
    """A P×K float64 batch whose classes overlap enough to mix active and inactive triplets.

    The batch is scaled so that the median distance is twice the margin: the margin then
    matters (a loss that mines the wrong triplets gives a different value).
    """
    y = torch.arange(p).repeat_interleave(k)
    centers = torch.randn(p, dim, generator=g, dtype=torch.float64)
    x = centers[y] + 0.6 * torch.randn(p * k, dim, generator=g, dtype=torch.float64)
    if metric != "cosine" and margin > 0:
        d = _pairwise(x, metric)
        median = d[~torch.eye(len(x), dtype=torch.bool)].median()
        power = 0.5 if metric == "sqeuclidean" else 1.0
        x = x * float((2 * margin / median) ** power)
    return x, y


def _pairwise(x: Tensor, metric: str) -> Tensor:
    diff = x[:, None, :] - x[None, :, :]
    squared = (diff * diff).sum(-1)
    if metric == "sqeuclidean":
        return squared
    if metric == "euclidean":
        # sqrt with a zero (not NaN) gradient at 0, as the definition requires
        positive = squared > 0
        safe = torch.where(positive, squared, 1)
        return torch.where(positive, safe.sqrt(), 0)
    norm = x.norm(dim=1)
    dot = x @ x.T
    defined = (norm[:, None] > 0) & (norm[None, :] > 0)
    cos = torch.where(defined, dot / (norm[:, None] * norm[None, :]).clamp_min(1e-12), 0)
    dist = (1 - cos).clamp_min(0)
    eye = torch.eye(len(x), dtype=torch.bool)
    return torch.where(eye & defined, 0, dist)


def _hinge(x: Tensor, smoothing: float | None) -> Tensor:
    if not smoothing:
        return x.clamp_min(0)
    return smoothing * torch.nn.functional.softplus(x / smoothing)
