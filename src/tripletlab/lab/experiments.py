"""The lab's experiments: loss surfaces (figure 1), descent runs (figure 2 and the extensions),
local smoothness along trajectories, and the many-seed sweep. Each returns plain data
(numpy arrays and JSON-ready dicts); ``outputs.py`` writes them and ``figures.py`` draws them.

Example:
    >>> result = descent_experiment(seed=0, rules=("eta_hat",), iterations=3)
    >>> round(result["summary"]["f0"], 5)
    0.69458
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tripletlab.lab import objective
from tripletlab.lab.descent import Trajectory, run_descent
from tripletlab.lab.instances import digits_instance, gaussian_instance, seed_batch, seed_instance
from tripletlab.lab.problem import TripletProblem
from tripletlab.lab.smoothness import local_smoothness, local_smoothness_g
from tripletlab.lab.step_rules import (
    SINGLE_TRIPLET_RULES,
    StepSettings,
    eta_hat_iterations,
    mf_bound,
    mf_corrected_bound,
    mg_bound,
    mg_corrected_bound,
)

DATASETS = ("seed", "gaussian", "digits")


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


# --- figure 1 -------------------------------------------------------------------------------


def surface_experiment(
    seed: int = 1,
    alphas: Sequence[float] = (0.0, 0.1),
    mus: Sequence[float] = (0.0, 0.1, 1.0),
    grid: int = 100,
    extent: float = 2.0,
) -> dict:
    """f_μ over w ∈ [−extent, extent]² (grid × grid) for one seed-protocol 2-d triplet.

    Returns ``{"w1", "w2", "values" (len(alphas), len(mus), grid, grid), "summary"}``; μ = 0 is
    the hinge. The summary holds B's eigenvalues, the infimum of each panel and the grid minimum,
    and how many grid values the naive formula μ·log(e^{x/μ} + e^{y/μ}) − y leaves non-finite.
    """
    problem, _ = seed_instance(seed, m=2)
    axis = np.linspace(-extent, extent, grid)
    w1, w2 = np.meshgrid(axis, axis, indexing="xy")
    W = np.stack([w1.ravel(), w2.ravel()], axis=-1)[:, None, :]
    u = np.broadcast_to(problem.u, (len(W), 1, 2))
    v = np.broadcast_to(problem.v, (len(W), 1, 2))
    values = np.empty((len(alphas), len(mus), grid, grid))
    panels = []
    for i, alpha in enumerate(alphas):
        for j, mu in enumerate(mus):
            values[i, j] = objective.smoothed_loss(W, u, v, alpha, mu).reshape(grid, grid)
            a, b = objective.squared_distances(W, u, v)
            with np.errstate(all="ignore"):
                naive = (
                    np.maximum(a + alpha, b) - b
                    if mu == 0
                    else mu * np.log(np.exp((a + alpha) / mu) + np.exp(b / mu)) - b
                )
            panels.append(
                {
                    "alpha": alpha,
                    "mu": mu,
                    "infimum": float(objective.infimum_single(problem.B, alpha, mu)[0]),
                    "grid_min": float(values[i, j].min()),
                    "grid_max": float(values[i, j].max()),
                    "naive_nonfinite": int((~np.isfinite(naive)).sum()),
                    "stable_nonfinite": int((~np.isfinite(values[i, j])).sum()),
                }
            )
    summary = {
        "seed": seed,
        "protocol": "RandomState(seed).rand(3, 2) -> x_a, x_p, x_n; u = x_a - x_p, v = x_a - x_n",
        "u": problem.u[0, 0].tolist(),
        "v": problem.v[0, 0].tolist(),
        "eigenvalues_B": problem.eigenvalues[0].tolist(),
        "grid": grid,
        "extent": extent,
        "panels": panels,
    }
    return {
        "w1": axis,
        "w2": axis,
        "values": values,
        "alphas": list(alphas),
        "mus": list(mus),
        "summary": summary,
    }


# --- figure 2, smoothness, extensions ----------------------------------------------------


def make_instance(
    data: str, seed: int, m: int, d: int, n: int, alpha: float, mu: float
) -> tuple[TripletProblem, np.ndarray]:
    """The instance of a descent run: the seed protocol (n = 1), Gaussian classes or digits."""
    if data == "seed":
        if n != 1:
            raise ValueError("data 'seed' is one triplet (n = 1); use 'gaussian' or 'digits'")
        return seed_instance(seed, m=m, d=d, alpha=alpha, mu=mu)
    if data == "gaussian":
        return gaussian_instance(seed, n=n, m=m, d=d, alpha=alpha, mu=mu)
    if data == "digits":
        return digits_instance(seed, n=n, d=d, alpha=alpha, mu=mu)
    raise ValueError(f"data must be one of {', '.join(DATASETS)}; got {data!r}")


def _growth_factor(norm: np.ndarray) -> float | None:
    """‖A_{t+1}‖/‖A_t‖ over the last two finite iterates."""
    finite = norm[np.isfinite(norm)]
    return float(finite[-1] / finite[-2]) if len(finite) >= 2 and finite[-2] > 0 else None


def _rule_summary(traj: Trajectory, tol: float, horizon: int) -> dict:
    loss = traj.loss[:, 0]
    hit = int(traj.iterations_to(tol)[0])
    within = loss[: horizon + 1]
    return {
        "iterations_to_tol": hit if hit >= 0 else None,
        "f_at_horizon": _finite_or_none(within[-1]),
        "best_f_within_horizon": _finite_or_none(np.nanmin(within)),
        "f_final": _finite_or_none(loss[-1]),
        "monotone": bool(traj.monotone()[0]),
        "first_increase": next(
            (t + 1 for t, dlt in enumerate(np.diff(loss)) if np.isfinite(dlt) and dlt > 0), None
        ),
        "first_nonfinite": int(traj.first_nonfinite()[0])
        if traj.first_nonfinite()[0] >= 0
        else None,
        "grad_sq_peak_iteration": int(np.nanargmax(traj.grad_sq[:, 0])),
        "grad_sq_0": _finite_or_none(traj.grad_sq[0, 0]),
        "grad_sq_peak": _finite_or_none(np.nanmax(traj.grad_sq[:, 0])),
        "grad_sq_final": _finite_or_none(traj.grad_sq[-1, 0]),
        "norm_0": float(traj.norm[0, 0]),
        "norm_final": _finite_or_none(traj.norm[-1, 0]),
        "norm_max": _finite_or_none(np.nanmax(traj.norm[:, 0])),
        "norm_growth_last": _growth_factor(traj.norm[:, 0]),
        "step_max": _finite_or_none(np.nanmax(traj.step[:, 0])) if len(traj.step) else None,
        "unbounded_line_searches": int(traj.unbounded[:, 0].sum()),
    }


def _bounds_along(problem: TripletProblem, traj: Trajectory) -> dict[str, np.ndarray]:
    """True local smoothness of f (and for n = 1 of g and every bound) along one trajectory:
    (T+1,) arrays."""
    P = traj.params
    out = {"L_f": local_smoothness(problem, P)[:, 0]}
    if problem.n == 1:  # the bounds (and so L_g, which only M_g is compared with) need n = 1
        out["L_g"] = local_smoothness_g(problem, P)[:, 0]
        with np.errstate(all="ignore"):
            out["M_g"] = np.array([mg_bound(problem, A)[0] for A in P])
            out["M_f"] = np.array([mf_bound(problem, A)[0] for A in P])
            if problem.mu > 0:
                out["M_f_corrected"] = np.array([mf_corrected_bound(problem, A)[0] for A in P])
                out["M_g_corrected"] = np.array([mg_corrected_bound(problem, A)[0] for A in P])
    return out


def _bound_verdicts(curves: dict[str, np.ndarray]) -> dict:
    """Where each bound holds (M ≥ L) and how loose it is (median M/L) along a trajectory."""
    verdict = {}
    for bound, truth in (
        ("M_g", "L_g"),
        ("M_f", "L_f"),
        ("M_f_corrected", "L_f"),
        ("M_g_corrected", "L_g"),
    ):
        if bound not in curves:
            continue
        M, L = curves[bound], curves[truth]
        ok = np.isfinite(M) & np.isfinite(L) & (L > 0)
        if not ok.any():
            continue
        valid = M[ok] >= L[ok] * (1 - 1e-12)
        verdict[bound] = {
            "vs": truth,
            "iterates": int(ok.sum()),
            "violations": int((~valid).sum()),
            "first_violation": int(np.flatnonzero(ok)[np.flatnonzero(~valid)[0]])
            if (~valid).any()
            else None,
            "median_ratio_M_over_L": float(np.median(M[ok] / L[ok])),
            "min_ratio_M_over_L": float(np.min(M[ok] / L[ok])),
        }
    return verdict


def descent_experiment(
    seed: int = 0,
    m: int = 2,
    d: int = 1,
    n: int = 1,
    alpha: float = 0.0,
    mu: float = 1.0,
    rules: Sequence[str] = ("mg", "mf", "eta_hat"),
    iterations: int = 20,
    data: str = "seed",
    settings: StepSettings | None = None,
    batch_size: int = 32,
    tol: float = 1e-6,
    horizon: int | None = None,
) -> dict:
    """Run every rule from the same A0 and measure each trajectory.

    Returns ``{"trajectories": {rule: Trajectory}, "bounds": {rule: {name: (T+1,)}},
    "summary": {...}}``. ``horizon`` (default ``iterations``) is where f is quoted when the
    tolerance is not reached.
    """
    problem, A0 = make_instance(data, seed, m, d, n, alpha, mu)
    settings = settings or StepSettings()
    horizon = iterations if horizon is None else min(horizon, iterations)
    trajectories, bounds, per_rule = {}, {}, {}
    for rule in rules:
        traj = run_descent(
            problem, A0, rule, iterations, settings, batch_size=batch_size, seed=seed
        )
        trajectories[rule] = traj
        bounds[rule] = _bounds_along(problem, traj)
        per_rule[rule] = _rule_summary(traj, tol, horizon) | {
            "bounds": _bound_verdicts(bounds[rule])
        }
    summary = {
        "data": data,
        "seed": seed,
        "m": problem.m,
        "d": A0.shape[1],
        "n": problem.n,
        "alpha": alpha,
        "mu": mu,
        "iterations": iterations,
        "tol": tol,
        "horizon": horizon,
        "lr": settings.lr,
        "f0": float(problem.loss(A0)[0]),
        "norm0": float(np.sqrt((A0**2).sum())),
        "rules": per_rule,
    }
    if problem.n == 1:
        lam = problem.eigenvalues[0]
        summary |= {
            "u": problem.u[0, 0].tolist(),
            "v": problem.v[0, 0].tolist(),
            "w0": A0[0].ravel().tolist(),
            "eigenvalues_B": lam.tolist(),
            "lambda_max": float(lam[-1]),
            "spectral_norm_B": float(np.abs(lam).max()),
            "infimum": float(problem.infimum()[0]),
            "eta_hat_growth_predicted": float(1 - lam[0] / lam[-1]) if lam[-1] > 0 else None,
        }
    return {
        "problem": problem,
        "A0": A0,
        "trajectories": trajectories,
        "bounds": bounds,
        "summary": summary,
    }


# --- the sweep --------------------------------------------------------------------------


def _sweep_row(problem: TripletProblem, traj: Trajectory, tol: float, with_bounds: bool) -> dict:
    hit = traj.iterations_to(tol)
    reached = hit >= 0
    nonfinite = traj.first_nonfinite() >= 0
    norm0 = traj.norm[0]
    with np.errstate(all="ignore"):
        growth = traj.norm[-1] / norm0
    row = {
        "reached": float(reached.mean()),
        "median_iterations": float(np.median(hit[reached])) if reached.any() else None,
        "p90_iterations": float(np.percentile(hit[reached], 90)) if reached.any() else None,
        "nonfinite": int(nonfinite.sum()),
        "non_monotone": int((~traj.monotone()).sum()),
        "median_final_f": _finite_or_none(np.nanmedian(traj.loss[-1]))
        if (~nonfinite).any()
        else None,
        "median_norm_growth": _finite_or_none(np.median(growth[np.isfinite(growth)]))
        if np.isfinite(growth).any()
        else None,
        "norm_blowup": int((~np.isfinite(growth) | (growth > 1e3)).sum()),
        "unbounded_line_searches": int(traj.unbounded.any(axis=0).sum()),
    }
    if with_bounds:
        P = traj.params
        L_f, L_g = local_smoothness(problem, P), local_smoothness_g(problem, P)
        with np.errstate(all="ignore"):
            M_f = np.stack([mf_bound(problem, A) for A in P])
            M_g = np.stack([mg_bound(problem, A) for A in P])
            M_fc = np.stack([mf_corrected_bound(problem, A) for A in P])
        for name, M, L in (("M_f", M_f, L_f), ("M_g", M_g, L_g), ("M_f_corrected", M_fc, L_f)):
            ok = np.isfinite(M) & np.isfinite(L) & (L > 0)
            bad = ok & (M < L * (1 - 1e-12))
            row[f"{name}_violated_iterates"] = float(bad.sum() / max(ok.sum(), 1))
            row[f"{name}_violated_instances"] = int(bad.any(axis=0).sum())
            row[f"{name}_median_ratio"] = float(np.median(M[ok] / L[ok]))
    return row


def sweep_experiment(
    seeds: int = 1000,
    dims: Sequence[int] = (2, 5, 10, 50),
    alpha: float = 0.0,
    mu: float = 1.0,
    rules: Sequence[str] = (
        "mg",
        "mf",
        "mf_corrected",
        "eta_hat",
        "eta_hat_safe",
        "constant",
        "inv_sqrt",
        "armijo",
        "exact",
        "nesterov",
        "dca",
    ),
    iterations: int = 100,
    tol: float = 1e-6,
    settings: StepSettings | None = None,
    first_seed: int = 0,
) -> dict:
    """Seeds first_seed .. first_seed+seeds−1 of the seed protocol, for every dimension m, every
    rule run vectorised over all seeds. Returns ``{"rows": [...], "instances": {...}}``: one row
    per (m, rule) with the fraction reaching f ≤ tol, median/p90 iterations, non-finite runs,
    non-monotone runs, ‖w‖ blow-ups and (for the seed's rules) how often M_f, M_g fail to bound
    the true local smoothness along the trajectory."""
    settings = settings or StepSettings()
    rows: list[dict] = []
    instances: dict[int, dict[str, float | int | None]] = {}
    for m in dims:
        problem, A0 = seed_batch(np.arange(first_seed, first_seed + seeds), m=m, alpha=alpha, mu=mu)
        lam = problem.eigenvalues
        instances[int(m)] = {
            "indefinite": int(((lam[:, 0] < 0) & (lam[:, -1] > 0)).sum()),
            "abs_lambda_min_exceeds_lambda_max": int((np.abs(lam[:, 0]) > lam[:, -1]).sum()),
            "abs_lambda_min_exceeds_2_lambda_max": int((np.abs(lam[:, 0]) > 2 * lam[:, -1]).sum()),
            "median_f0": float(np.median(problem.loss(A0))),
            "median_kappa": float(np.median(-lam[:, 0] / lam[:, -1])),
        }
        predicted = eta_hat_iterations(problem, A0, tol)
        finite = predicted[predicted >= 0]
        instances[int(m)] |= {
            "eta_hat_closed_form_median": float(np.median(finite)) if len(finite) else None,
            "eta_hat_closed_form_p90": float(np.percentile(finite, 90)) if len(finite) else None,
            "eta_hat_closed_form_max": int(finite.max()) if len(finite) else None,
            "eta_hat_never": int((predicted < 0).sum()),
        }
        for rule in rules:
            with np.errstate(all="ignore"):
                traj = run_descent(problem, A0, rule, iterations, settings)
                with_bounds = rule in SINGLE_TRIPLET_RULES and mu > 0
                row = {"m": int(m), "rule": rule} | _sweep_row(problem, traj, tol, with_bounds)
            if rule in ("eta_hat", "eta_hat_safe"):
                expected = np.where(predicted > iterations, -1, predicted)
                row["closed_form_agreement"] = float((traj.iterations_to(tol) == expected).mean())
            rows.append(row)
    config = {
        "seeds": seeds,
        "first_seed": first_seed,
        "dims": [int(x) for x in dims],
        "alpha": alpha,
        "mu": mu,
        "iterations": iterations,
        "tol": tol,
        "lr": settings.lr,
        "floor": settings.floor,
        "max_step": settings.max_step,
    }
    return {"rows": rows, "instances": instances, "config": config}
