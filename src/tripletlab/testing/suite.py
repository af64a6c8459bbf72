"""What every conformance suite shares: the report, tolerant comparison, and the runner.

A suite is a table of named module-level checks, each ``check(case)`` raising an
``AssertionError`` on failure (the shape of scikit-learn's ``estimator_checks``);
:func:`run_checks` runs them and records each outcome in a :class:`ConformanceReport`.

Example:
    >>> report = ConformanceReport("demo")
    >>> def check_ok(case): pass
    >>> def check_bad(case): raise AssertionError("too large")
    >>> print(run_checks(report, {"ok": check_ok, "bad": check_bad}, None))
    demo: 1 passed, 1 failed
    >>> report.failures
    ['bad: too large']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import torch
from torch import Tensor

__all__ = [
    "ConformanceReport",
    "assert_close",
    "empty_result",
    "grads_of",
    "label_of",
    "repeated_twice",
    "run_checks",
]

Case = TypeVar("Case")


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


def run_checks(
    report: ConformanceReport, checks: Mapping[str, Callable[[Case], None]], case: Case
) -> ConformanceReport:
    """Run every check on ``case``; an implementation that crashes fails the check."""
    for name, check in checks.items():
        try:
            check(case)
        except AssertionError as err:
            report.failures.append(f"{name}: {err}")
        except Exception as err:  # a failing implementation may raise anything
            report.failures.append(f"{name}: raised {type(err).__name__}: {err}")
        else:
            report.passed.append(name)
    return report


def assert_close(got: Tensor, want: Tensor, what: str, atol: float, rtol: float) -> None:
    """``got`` has ``want``'s shape, finite values, and ``|got − want| ≤ atol + rtol·|want|``."""
    got = torch.as_tensor(got).detach().to(want.dtype)
    if got.shape != want.shape:
        raise AssertionError(f"{what}: shape {tuple(got.shape)}, expected {tuple(want.shape)}")
    if not torch.isfinite(got).all():
        raise AssertionError(f"{what}: non-finite values {got.flatten()[:6].tolist()}")
    err = (got - want).abs()
    if bool((err > atol + rtol * want.abs()).any()):
        raise AssertionError(
            f"{what}: max abs error {float(err.max()):.3g} exceeds atol={atol:g}, rtol={rtol:g}"
        )


def grads_of(
    fn: Callable[..., Tensor], inputs: tuple[Tensor, ...], *rest: Tensor
) -> tuple[Tensor, tuple[Tensor, ...]]:
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    out = fn(*leaves, *rest)  # type: ignore[call-arg]
    out.sum().backward()
    return out.detach(), tuple(
        x.grad if x.grad is not None else torch.zeros_like(x) for x in leaves
    )


def repeated_twice(once: Tensor, reduction: str) -> Tensor:
    """What a loss gives on its batch repeated twice, from what it gives on the batch once."""
    if reduction == "none":
        return torch.cat([once, once])
    return 2 * once if reduction == "sum" else once


def empty_result(reduction: str, dtype: torch.dtype) -> Tensor:
    return torch.zeros(0, dtype=dtype) if reduction == "none" else torch.zeros((), dtype=dtype)


def label_of(fn: object, name: str | None) -> str:
    return name or str(getattr(fn, "__name__", type(fn).__name__))
