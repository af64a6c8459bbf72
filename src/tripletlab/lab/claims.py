"""Every claim of the seed's sections 2.4–2.10 checked on many seed-protocol instances at once.

``claims_report`` returns one JSON-ready dict (what ``tripletlab lab claims`` writes): for each
claim the seed's statement, the verdict, the counts over the instances and a concrete
counterexample where the claim fails. The maths is in ``claims_smoothness`` and
``claims_convergence``; docs/lab.md gives the proof sketches.

Example:
    >>> report = claims_report(seeds=50, dims=(2,))
    >>> report["2.4_cross_term"]["fails"], report["2.4_cross_term"]["instances"]
    (50, 50)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tripletlab.lab import claims_convergence as conv
from tripletlab.lab import claims_smoothness as smooth
from tripletlab.lab.descent import run_descent
from tripletlab.lab.instances import seed_batch
from tripletlab.lab.problem import TripletProblem

# Grid of the §2.9 counterexample: q in 0.1..0.9, X in 0..5 (the range ‖∇f‖² takes early on).
GRID_Q = np.linspace(0.1, 0.9, 9)
GRID_X = np.linspace(0.0, 5.0, 11)
# Relative slack for float64 comparisons of quantities computed two ways.
RTOL = 1e-9


def _cross_term(problem: TripletProblem) -> dict:
    sup, seed = smooth.cross_term_norms(problem.u[:, 0], problem.v[:, 0])
    return {
        "claim": "|zᵀ(uvᵀ+vuᵀ)z| ≤ 2|uᵀv|‖z‖²",
        "instances": len(sup),
        "fails": int((sup > seed * (1 + RTOL)).sum()),
        "median_sup_over_seed_bound": float(np.median(sup / seed)),
        "counterexample": {"u": [1.0, 0.0], "v": [0.0, 1.0], "z": [0.5**0.5, 0.5**0.5]},
        "holds_instead": "sup = |uᵀv| + ‖u‖‖v‖ ≤ 2‖u‖‖v‖",
    }


def _global_smoothness(problem: TripletProblem) -> dict:
    scales = np.array([10.0, 100.0, 1000.0])
    growth = smooth.hessian_growth_on_null_cone(problem, scales)
    lam = problem.eigenvalues
    limit = (lam[:, -1] - lam[:, 0]) / problem.mu
    return {
        "claim": "f is M_f-smooth (used as a global constant)",
        "instances": problem.batch,
        "scales": scales.tolist(),
        "max_rel_error_vs_limit": np.abs(growth / limit - 1).max(axis=1).tolist(),
        "largest_eigenvalue_at_t=1000_median": float(np.median(growth[-1] * 1e6)),
        "holds_instead": "max eig ∇²f(t·w₀)/t² → (λmax + |λmin|)/μ on wᵀBw = 0",
    }


def _descent_sign(problem: TripletProblem, rng: np.random.RandomState) -> dict:
    w = rng.randn(problem.batch, 1, problem.m)
    eta = rng.rand(problem.batch) * 10
    with np.errstate(all="ignore"):
        actual = problem.loss(w - eta[:, None, None] * problem.gradient(w)) - problem.loss(w)
    predicted = conv.predicted_change(problem, w, eta)
    c = predicted - 0.01  # a c < log(q e^b + 1 − q), as the seed says to select
    return {
        "claim": "select c < log(q e^{b_η} + 1 − q)",
        "instances": problem.batch,
        "identity_max_abs_error": float(np.abs(actual - predicted).max()),
        "seed_c_violates_descent_condition": int((actual > c).sum()),
        "holds_instead": "f(w⁺) − f(w) = log(q e^{b_η} + 1 − q) exactly; any c ≥ it works",
    }


def _iterate_bound(problem: TripletProblem, A0: np.ndarray, steps: int) -> dict:
    traj = run_descent(problem, A0, "eta_hat", steps)
    rows = []
    for t in range(1, steps + 1):
        exact = conv.eta_hat_closed_form(problem, A0, t)
        ok = np.isfinite(traj.norm[t]) & (traj.loss[t] > 0)
        rows.append(
            {
                "t": t,
                "checked_runs": int(ok.sum()),  # ‖w_t‖ finite and f(w_t) not underflowed
                "seed_bound_holds": int((exact["seed_bound"][ok] >= traj.norm[t][ok]).sum()),
                "norm_formula_max_rel_error": float(
                    np.abs(exact["norm"][ok] / traj.norm[t][ok] - 1).max()
                ),
                "loss_formula_max_rel_error": float(
                    np.abs(exact["loss"][ok] / traj.loss[t][ok] - 1).max()
                ),
                "median_norm": float(np.median(exact["norm"])),
                "max_norm": float(exact["norm"].max()),
                "median_bound_over_norm": float(
                    np.median(exact["seed_bound"][ok] / traj.norm[t][ok])
                ),
            }
        )
    return {
        "claim": "‖w^{t+1}‖ ≤ ‖(I − B/λmax)ᵗ‖_F ‖w¹‖",
        "instances": problem.batch,
        "per_step": rows,
        "median_rate_limit_bound_over_norm": float(
            np.median(conv.eta_hat_closed_form(problem, A0, 1)["rate_limit"])
        ),
        "holds_instead": "‖w_t‖² = ‖w⁰‖² − c_max² − c_min² + c_min²(1+κ)^{2t}",
    }


def _gradient_norm(problem: TripletProblem, A0: np.ndarray, steps: int) -> dict:
    grid = conv.seed_log_gap_grid(GRID_Q, GRID_X)
    at_start = conv.section_29_step(problem, A0)
    w = A0.copy()
    total, drop = np.zeros(problem.batch), problem.loss(A0)
    for _ in range(steps):  # η = 1/λmax, the step of §2.9
        step = conv.section_29_step(problem, w)
        total += step["corrected"]
        w = w - (1.0 / problem.lam_max)[:, None, None] * problem.gradient(w)
    drop = drop - problem.loss(w)
    return {
        "claim": "log(q e^{X} + 1 − q) ≤ f(w^t) − f(w^{t+1})",
        "instances": problem.batch,
        "grid_min_log_gap": float(grid.min()),
        "grid_argmin_q_X": [
            float(GRID_Q[np.unravel_index(grid.argmin(), grid.shape)[0]]),
            float(GRID_X[np.unravel_index(grid.argmin(), grid.shape)[1]]),
        ],
        "seed_valid_step_holds": int((at_start["decrease"] >= at_start["seed_valid"] - RTOL).sum()),
        "seed_claimed_step_fails": int(
            (at_start["decrease"] < at_start["seed_claimed"] - RTOL).sum()
        ),
        "corrected_step_holds": int((at_start["decrease"] >= at_start["corrected"] - RTOL).sum()),
        "telescoped_steps": steps,
        "telescoped_corrected_holds": int((total <= drop + RTOL).sum()),
        "holds_instead": "f − f⁺ ≥ (1 − 1/e)·min((1 − q)‖∇f‖²/λmax, q)",
    }


def _function_value(problem: TripletProblem, rng: np.random.RandomState) -> dict:
    w = rng.randn(problem.batch, 1, problem.m)
    lam, vecs = np.linalg.eigh(problem.B)
    far = vecs[:, None, :, 0] * 30.0  # along e_min, wᵀBw = 900·λmin
    return {
        "claim": "f(w^{t+1}) − f(w*) with a minimiser w*",
        "instances": problem.batch,
        "indefinite": int(((lam[:, 0] < 0) & (lam[:, -1] > 0)).sum()),
        "min_f_at_random_points": float(problem.loss(w).min()),
        "f_positive_everywhere_sampled": bool((problem.loss(w) > 0).all()),
        "median_f_along_e_min_at_30": float(np.median(problem.loss(far))),
        "holds_instead": "f(w_t) = softplus(λmin c_min²(1+κ)^{2t}) under η̂; inf f = 0 unattained",
    }


def _docs_counterexample() -> dict:
    return smooth.top_eigenvalue_counterexample()


def claims_report(
    seeds: int = 1000,
    dims: Sequence[int] = (2, 20),
    steps: int = 8,
    first_seed: int = 0,
) -> dict:
    """Check every claim on seeds first_seed .. first_seed+seeds−1 of the seed protocol (m = the
    first of ``dims`` for the per-instance checks; every m for the M_f-vs-M_g counts)."""
    if seeds < 1 or not dims:
        raise ValueError("claims_report needs seeds >= 1 and at least one dimension")
    problem, A0 = seed_batch(np.arange(first_seed, first_seed + seeds), m=dims[0])
    rng = np.random.RandomState(first_seed)
    with np.errstate(all="ignore"):
        report = {
            "config": {"seeds": seeds, "first_seed": first_seed, "m": dims[0], "dims": list(dims)},
            "2.4_cross_term": _cross_term(problem),
            "2.5_global_smoothness": _global_smoothness(problem),
            "2.5_mf_vs_mg": [smooth.mf_vs_mg_at_start(seeds, m, first_seed) for m in dims],
            "2.5_top_eigenvalue_counterexample": _docs_counterexample(),
            "2.6_descent_sign": _descent_sign(problem, rng),
            "2.8_iterate_bound": _iterate_bound(problem, A0, steps),
            "2.9_gradient_norm": _gradient_norm(problem, A0, steps),
            "2.10_function_value": _function_value(problem, rng),
        }
    return report
