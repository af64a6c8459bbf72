"""The contrastive loss's descent runs: the same step rules, the true local smoothness along each
trajectory against the global constant L, and the triplet loss on the same triplets for
comparison (their two pairs make the contrastive instance).

Example:
    >>> result = contrastive_experiment(n=20, m=3, rules=("global_l",), iterations=3)
    >>> bool(result["summary"]["rules"]["global_l"]["monotone"])
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tripletlab.lab.contrastive import ContrastiveProblem
from tripletlab.lab.descent import run_descent
from tripletlab.lab.experiments import _rule_summary, make_instance
from tripletlab.lab.step_rules import StepSettings


def _max_abs_eig(H: np.ndarray) -> np.ndarray:
    eig = np.linalg.eigvalsh(H)
    return np.maximum(np.abs(eig[..., 0]), np.abs(eig[..., -1]))


def contrastive_experiment(
    data: str = "gaussian",
    seed: int = 0,
    n: int = 200,
    m: int = 5,
    d: int = 2,
    eps: float = 1.0,
    mu: float = 0.1,
    rules: Sequence[str] = ("global_l", "constant", "armijo", "exact", "nesterov", "dca", "sgd"),
    iterations: int = 100,
    settings: StepSettings | None = None,
    batch_size: int = 32,
    tol: float = 1e-6,
) -> dict:
    """Every rule on the contrastive loss of the n triplets' 2n pairs, and (where the rule
    applies) on their triplet loss with α = ε. Returns ``{"trajectories", "triplet", "local",
    "summary"}``: ``local[rule]`` is max|eig ∇²f| along that run, (T+1,)."""
    triplets, A0 = make_instance(data, seed, m, d, n, eps, mu)
    problem = ContrastiveProblem(triplets.u, triplets.v, eps, mu)
    cfg = settings or StepSettings()
    runs, triplet_runs, local, per_rule = {}, {}, {}, {}
    for rule in rules:
        run = run_descent(problem, A0, rule, iterations, cfg, batch_size=batch_size, seed=seed)
        runs[rule] = run
        with np.errstate(all="ignore"):
            local[rule] = np.array([_max_abs_eig(problem.hessian(A))[0] for A in run.params])
        per_rule[rule] = _rule_summary(run, tol, iterations) | {
            "max_local_smoothness": float(np.nanmax(local[rule]))
        }
        if rule != "global_l":
            triplet_runs[rule] = run_descent(
                triplets, A0, rule, iterations, cfg, batch_size=batch_size, seed=seed
            )
            per_rule[rule]["triplet_f_final"] = float(triplet_runs[rule].loss[-1, 0])
    L = float(problem.global_smoothness()[0])
    summary = {
        "data": data,
        "seed": seed,
        "m": problem.m,
        "d": d,
        "n": problem.n,
        "alpha": eps,
        "eps": eps,
        "mu": mu,
        "iterations": iterations,
        "tol": tol,
        "horizon": iterations,
        "lr": cfg.lr,
        "f0": float(problem.loss(A0)[0]),
        "norm0": float(np.sqrt((A0**2).sum())),
        "global_smoothness": L,
        "max_local_smoothness": max(r["max_local_smoothness"] for r in per_rule.values()),
        "rules": per_rule,
    }
    return {
        "trajectories": runs,
        "triplet": triplet_runs,
        "local": local,
        "summary": summary,
    }
