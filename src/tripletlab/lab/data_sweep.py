"""The sweep beyond n = d = 1: many labelled instances (Gaussian classes or digits) per setting
(n triplets, d output rows, margin α, smoothing μ, optionally a bias term), every rule run
vectorised over the instances.

With n > 1 the infimum is positive and unknown, so "success" is relative: per instance the
reference value f_ref is the lowest f any rule reached at any iterate, and a run *reaches* the
target at the first t with f_t − f_ref ≤ gap·(f_0 − f_ref). Mini-batch SGD gets the same budget
of per-triplet gradients as the full-batch rules (⌈T·n/b⌉ steps of b triplets), and every
count is in **epochs** (n triplet-gradients), so the comparison is at equal work.

The bias φ(x) = Ax + b is implemented by appending a constant feature 1 to every sample: then
the differences u, v get a 0 coordinate, b's gradient is exactly 0 and the trajectories equal
the unbiased ones — measured, not assumed (``max_bias_effect``).

Example:
    >>> result = data_sweep(seeds=2, settings=((8, 1),), rules=("armijo",), iterations=3, m=3)
    >>> result["rows"][0]["rule"], result["rows"][0]["n"]
    ('armijo', 8)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tripletlab.errors import ConfigError
from tripletlab.lab.descent import Trajectory, run_descent
from tripletlab.lab.instances import digits_instance, gaussian_instance
from tripletlab.lab.problem import TripletProblem
from tripletlab.lab.step_rules import SINGLE_TRIPLET_RULES, StepSettings

DATA = ("gaussian", "digits")


def labelled_batch(
    data: str, seeds: Sequence[int], n: int, d: int, m: int, alpha: float, mu: float
) -> tuple[TripletProblem, np.ndarray]:
    """One labelled instance per seed, stacked: u, v (S, n, m'), A0 (S, d, m') (m' = 64 for digits)."""
    if data not in DATA:
        raise ConfigError(f"data must be one of {', '.join(DATA)}; got {data!r}")
    make = (
        (lambda s: gaussian_instance(int(s), n=n, m=m, d=d, alpha=alpha, mu=mu))
        if data == "gaussian"
        else (lambda s: digits_instance(int(s), n=n, d=d, alpha=alpha, mu=mu))
    )
    parts = [make(s) for s in seeds]
    u = np.concatenate([p.u for p, _ in parts])
    v = np.concatenate([p.v for p, _ in parts])
    return TripletProblem(u, v, alpha, mu), np.concatenate([a for _, a in parts])


def with_bias(
    problem: TripletProblem, A0: np.ndarray, seed: int
) -> tuple[TripletProblem, np.ndarray]:
    """φ(x) = Ax + b as a linear map of (x, 1): u, v gain the coordinate 1 − 1 = 0, A0 gains the
    column b₀ ~ N(0, 1) (RandomState(seed))."""
    zeros = np.zeros((*problem.u.shape[:2], 1))
    bias = np.random.RandomState(seed).randn(A0.shape[0], A0.shape[1], 1)
    return (
        TripletProblem(
            np.concatenate([problem.u, zeros], -1),
            np.concatenate([problem.v, zeros], -1),
            problem.alpha,
            problem.mu,
        ),
        np.concatenate([A0, bias], -1),
    )


def _epochs_to_target(traj: Trajectory, f_ref: np.ndarray, gap: float, per_epoch: float):
    f = traj.loss
    target = f_ref + gap * (f[0] - f_ref)
    hit = f <= target
    first = np.where(hit.any(axis=0), hit.argmax(axis=0), -1)
    return first, np.where(first >= 0, first / per_epoch, np.nan)


def _row(traj: Trajectory, f_ref: np.ndarray, gap: float, per_epoch: float) -> dict:
    first, epochs = _epochs_to_target(traj, f_ref, gap, per_epoch)
    reached = first >= 0
    final_gap = (traj.loss[-1] - f_ref) / np.maximum(traj.loss[0] - f_ref, 1e-300)
    return {
        "reached": float(reached.mean()),
        "median_epochs": float(np.median(epochs[reached])) if reached.any() else None,
        "median_final_f": float(np.nanmedian(traj.loss[-1])),
        "median_final_relative_gap": float(np.nanmedian(final_gap)),
        "median_final_grad_sq": float(np.nanmedian(traj.grad_sq[-1])),
        "non_monotone": int((~traj.monotone()).sum()),
        "nonfinite": int((traj.first_nonfinite() >= 0).sum()),
    }


def _run_rules(problem, A0, rules, iterations, cfg, batch_size, seed) -> dict[str, Trajectory]:
    runs = {}
    for rule in rules:
        steps = int(np.ceil(iterations * problem.n / batch_size)) if rule == "sgd" else iterations
        with np.errstate(all="ignore"):
            runs[rule] = run_descent(
                problem, A0, rule, steps, cfg, batch_size=batch_size, seed=seed
            )
    return runs


def data_sweep(
    data: str = "gaussian",
    seeds: int = 20,
    settings: Sequence[tuple[int, int]] = ((30, 1), (30, 2), (300, 2)),
    m: int = 5,
    alpha: float = 0.1,
    mu: float = 0.1,
    rules: Sequence[str] = ("constant", "armijo", "exact", "nesterov", "dca", "sgd"),
    iterations: int = 100,
    step: StepSettings | None = None,
    batch_size: int = 32,
    gap: float = 1e-3,
    bias: bool = False,
    first_seed: int = 0,
) -> dict:
    """Every rule on ``seeds`` labelled instances for every (n, d) in ``settings``.

    Returns ``{"rows": [...], "config": {...}}``: one row per (n, d, rule) with the fraction of
    instances reaching the relative target, the median epochs to it, the median final f,
    relative gap and ‖∇f‖², non-monotone and non-finite runs; with ``bias`` each row also
    holds ``max_bias_effect``, the largest |f_bias − f| over all iterates and instances.
    """
    bad = [r for r in rules if r in SINGLE_TRIPLET_RULES]
    if bad:
        raise ConfigError(f"rules {bad} need a single triplet (n = 1); the data sweep has n > 1")
    if seeds < 1 or batch_size < 1:
        raise ConfigError("seeds and batch_size must be >= 1")
    cfg = step or StepSettings()
    seed_list = list(range(first_seed, first_seed + seeds))
    rows = []
    for n, d in settings:
        problem, A0 = labelled_batch(data, seed_list, n, d, m, alpha, mu)
        runs = _run_rules(problem, A0, rules, iterations, cfg, batch_size, first_seed)
        f_ref = np.nanmin(np.stack([np.nanmin(t.loss, axis=0) for t in runs.values()]), axis=0)
        biased = {}
        if bias:
            bp, bA0 = with_bias(problem, A0, first_seed)
            biased = _run_rules(bp, bA0, rules, iterations, cfg, batch_size, first_seed)
        for rule, traj in runs.items():
            per_epoch = problem.n / batch_size if rule == "sgd" else 1.0
            row = {"n": n, "d": d, "m": problem.m, "rule": rule} | _row(traj, f_ref, gap, per_epoch)
            if bias:
                row["max_bias_effect"] = float(np.nanmax(np.abs(biased[rule].loss - traj.loss)))
            rows.append(row)
    config = {
        "data": data,
        "seeds": seeds,
        "first_seed": first_seed,
        "settings": [list(s) for s in settings],
        "m": m,
        "alpha": alpha,
        "mu": mu,
        "iterations": iterations,
        "lr": cfg.lr,
        "batch_size": batch_size,
        "gap": gap,
        "bias": bias,
    }
    return {"rows": rows, "config": config}
