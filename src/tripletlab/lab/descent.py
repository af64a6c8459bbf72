"""The gradient-descent driver: runs one rule on a batch of instances and records every curve.

A ← A − η_t ∇f(A) with η_t from a step rule (``step_rules.STEP_RULES``), or one of two methods:

- ``nesterov``: Y = A_t + t/(t+3)·(A_t − A_{t−1}),  A_{t+1} = Y − lr·∇f(Y)
- ``armijo``: backtracking from twice the previous accepted step (the first from ``armijo_init``)
- ``sgd``: A ← A − lr/√(t+1) · ∇f_batch(A), a mini-batch of ``batch_size`` triplets drawn without
  replacement from RandomState(seed) each step (the same rows for every instance).
- ``dca``: A ← argmin_X g_μ(X) − ⟨∇h(A), X⟩ (``dca.dca_step``); the recorded η is the equivalent
  gradient step ‖A_{t+1} − A_t‖/‖∇f(A_t)‖.

Every iterate is recorded (f, ‖A‖_F, ‖∇f‖², η, unbounded line searches), so the curves can be
plotted and written out. Non-finite values are kept, not hidden: they are the divergence signal.

Reference: Y. Nesterov (1983); L. Jaffe (2020), appendix A.

Example:
    >>> from tripletlab.lab.instances import seed_instance
    >>> problem, A0 = seed_instance(0)
    >>> run = run_descent(problem, A0, "eta_hat", iterations=5)
    >>> run.loss.shape
    (6, 1)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tripletlab.lab.contrastive import ContrastiveProblem
from tripletlab.lab.dca import dca_step
from tripletlab.lab.problem import TripletProblem
from tripletlab.lab.step_rules import (
    ALL_RULES,
    SINGLE_TRIPLET_RULES,
    STEP_RULES,
    StepSettings,
    backtracking,
    exact_step,
)

# Every problem the driver runs: the triplet loss, and the contrastive loss (the rules that need
# a single triplet check for TripletProblem themselves).
Problem = TripletProblem | ContrastiveProblem


@dataclass(frozen=True)
class Trajectory:
    """The recorded run of one rule on S instances over T iterations.

    Attributes:
        rule: the rule's name.
        params: iterates A_t, shape (T+1, S, d, m).
        loss: f(A_t), shape (T+1, S).
        grad_sq: ‖∇f(A_t)‖², shape (T+1, S).
        norm: ‖A_t‖_F, shape (T+1, S).
        step: η_t, shape (T, S).
        unbounded: exact line search found no finite minimiser, shape (T, S).
    """

    rule: str
    params: np.ndarray
    loss: np.ndarray
    grad_sq: np.ndarray
    norm: np.ndarray
    step: np.ndarray
    unbounded: np.ndarray

    def iterations_to(self, tol: float) -> np.ndarray:
        """First t with f(A_t) ≤ tol per instance, or −1 if never, shape (S,)."""
        hit = self.loss <= tol
        return np.where(hit.any(axis=0), hit.argmax(axis=0), -1)

    def first_nonfinite(self) -> np.ndarray:
        """First t where f, ‖A‖ or ‖∇f‖² is not finite, or −1, shape (S,)."""
        bad = ~(np.isfinite(self.loss) & np.isfinite(self.norm) & np.isfinite(self.grad_sq))
        return np.where(bad.any(axis=0), bad.argmax(axis=0), -1)

    def monotone(self) -> np.ndarray:
        """Whether f(A_{t+1}) ≤ f(A_t) at every finite step, up to rounding (a relative 1e-12:
        once f stalls at ~1e-24 it can move by an ulp either way), shape (S,)."""
        diff = np.diff(self.loss, axis=0)
        return np.all((diff <= 1e-12 * np.abs(self.loss[:-1])) | ~np.isfinite(diff), axis=0)


def _check_rule(problem: Problem, rule: str) -> None:
    if rule not in ALL_RULES:
        raise ValueError(f"rule must be one of {', '.join(ALL_RULES)}; got {rule!r}")
    if rule in SINGLE_TRIPLET_RULES and problem.n != 1:
        raise ValueError(
            f"rule {rule!r} is defined for a single triplet (n = 1); got n = {problem.n}"
        )


def run_descent(
    problem: Problem,
    A0: np.ndarray,
    rule: str,
    iterations: int,
    settings: StepSettings | None = None,
    *,
    batch_size: int = 1,
    seed: int = 0,
) -> Trajectory:
    """Run ``iterations`` steps of ``rule`` from A0 (S, d, m) on every instance of ``problem``."""
    _check_rule(problem, rule)
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0; got {iterations}")
    cfg = settings or StepSettings()
    rng = np.random.RandomState(seed)
    A = np.array(A0, dtype=float)
    previous = A.copy()
    last_step = np.full(problem.batch, cfg.armijo_init / 2.0)
    params, losses, grads, steps, unbounded = [A], [], [], [], []
    G = problem.gradient(A)
    losses.append(problem.loss(A))
    grads.append((G * G).sum(axis=(1, 2)))
    for t in range(iterations):
        flag = np.zeros(problem.batch, dtype=bool)
        with np.errstate(all="ignore"):
            if rule == "nesterov":
                Y = A + t / (t + 3.0) * (A - previous)
                eta = np.full(problem.batch, cfg.lr)
                new = Y - cfg.lr * problem.gradient(Y)
            elif rule == "sgd":
                rows = rng.choice(problem.n, size=min(batch_size, problem.n), replace=False)
                eta = np.full(problem.batch, cfg.lr / np.sqrt(t + 1.0))
                new = A - eta[:, None, None] * problem.subset(rows).gradient(A)
            elif rule == "armijo":
                # warm start: try twice the last accepted step (Nocedal & Wright, sec. 3.5)
                start = np.minimum(2.0 * last_step, cfg.max_step)
                eta = backtracking(problem, A, G, losses[-1], start, cfg)  # type: ignore[arg-type]
                last_step = np.where(eta > 0, eta, last_step)
                new = A - eta[:, None, None] * G
            elif rule == "dca":
                new = dca_step(problem, A)
                eta = np.sqrt(((new - A) ** 2).sum(axis=(1, 2)) / (G * G).sum(axis=(1, 2)))
            elif rule == "exact":
                eta, flag = exact_step(problem, A, G, cfg)  # type: ignore[arg-type]
                new = A - eta[:, None, None] * G
            else:
                eta = STEP_RULES[rule](problem, A, G, losses[-1], t, cfg)  # type: ignore[arg-type]
                new = A - eta[:, None, None] * G
            previous, A = A, new
            G = problem.gradient(A)
            losses.append(problem.loss(A))
            grads.append((G * G).sum(axis=(1, 2)))
        params.append(A)
        steps.append(eta)
        unbounded.append(flag)
    params_arr = np.stack(params)
    return Trajectory(
        rule=rule,
        params=params_arr,
        loss=np.stack(losses),
        grad_sq=np.stack(grads),
        norm=np.sqrt((params_arr**2).sum(axis=(2, 3))),
        step=np.stack(steps) if steps else np.zeros((0, problem.batch)),
        unbounded=np.stack(unbounded) if unbounded else np.zeros((0, problem.batch), bool),
    )
