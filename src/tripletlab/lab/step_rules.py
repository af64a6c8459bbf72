"""Step-size rules for gradient descent on the triplet objective, vectorised over instances.

Each rule maps the current state (problem, A, ∇f(A), f(A), iteration t, settings) to a step
η of shape (S,). The seed's three rules need a single triplet (n = 1):

- ``mg``           η = 1/M_g,  M_g = ‖A‖²_F (‖u‖⁴ + ‖v‖⁴ + 4‖u‖²‖v‖²)          (seed eq. 23)
- ``mf``           η = 1/M_f,  M_f = ‖A‖²_F λmax(B)² + 2λmax(B)                    (seed eq. 29)
- ``mf_corrected`` η = 1/M̃_f, M̃_f = ‖A‖²_F ‖B‖₂²/μ + 2‖B‖₂, a valid bound on |∇²f_μ|
- ``eta_hat``      η̂ = 1/(2 s λmax(B)), s = sigmoid(z/μ) (the seed's q): A ← A(I − B/λmax)
- ``eta_hat_safe`` η̂ with s floored at ``floor`` (η ≤ 1/(2·floor·λmax)), then Armijo backtracking

``global_l`` η = 1/L for objectives with a global smoothness constant L (the contrastive
loss; the triplet loss has none), and the general ones: ``constant`` (lr), ``inv_sqrt`` (lr/√(t+1)), ``armijo`` (backtracking from
``armijo_init``; the driver warm-starts it from twice the last accepted step), ``exact`` (exact
line search). ``nesterov``, ``sgd`` and ``dca`` (the convex–concave procedure, ``dca.py``)
are methods of the driver (``descent.py``), not step rules.

Reference: L. Jaffe (2020), sections 2.4–2.7; L. Armijo (1966), Pacific J. Math. 16(1).

Example:
    >>> from tripletlab.lab.instances import seed_instance
    >>> problem, A0 = seed_instance(0)
    >>> eta = STEP_RULES["eta_hat"](problem, A0, problem.gradient(A0), problem.loss(A0), 0,
    ...                             StepSettings())
    >>> bool(eta[0] > 0)
    True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tripletlab.errors import ConfigError
from tripletlab.lab.problem import TripletProblem


@dataclass(frozen=True)
class StepSettings:
    """Parameters of the step rules.

    Args:
        lr: the constant step (``constant``, ``inv_sqrt``, ``nesterov``, ``sgd``).
        floor: lower bound on s in the safeguarded η̂ (so η̂ ≤ 1/(2·floor·λmax)).
        armijo_init: first trial step of ``armijo``.
        armijo_c: sufficient-decrease constant c in f(A − ηG) ≤ f(A) − c·η‖G‖².
        armijo_beta: backtracking factor.
        max_halvings: backtracking gives up (step 0) after this many reductions.
        max_step: cap on the exact line search when f decreases without bound along the ray.
    """

    lr: float = 0.1
    floor: float = 1e-8
    armijo_init: float = 1.0
    armijo_c: float = 1e-4
    armijo_beta: float = 0.5
    max_halvings: int = 60
    max_step: float = 1e6


# Golden-section search: interval shrink factor (√5 − 1)/2, and 80 iterations (0.618⁸⁰ ≈ 2e-17
# of the bracket: to float64 resolution).
GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0
GOLDEN_ITERATIONS = 80

StepRule = Callable[
    [TripletProblem, np.ndarray, np.ndarray, np.ndarray, int, StepSettings], np.ndarray
]


def _sq_norm(A: np.ndarray) -> np.ndarray:
    return (A * A).sum(axis=(1, 2))


def mg_bound(problem: TripletProblem, A: np.ndarray) -> np.ndarray:
    """The seed's M_g = ‖A‖²_F (‖u‖⁴ + ‖v‖⁴ + 4‖u‖²‖v‖²), shape (S,) (n = 1)."""
    problem.require_single("M_g")
    uu = (problem.u[:, 0] ** 2).sum(-1)
    vv = (problem.v[:, 0] ** 2).sum(-1)
    return _sq_norm(A) * (uu**2 + vv**2 + 4 * uu * vv)


def mf_bound(problem: TripletProblem, A: np.ndarray) -> np.ndarray:
    """The seed's M_f = ‖A‖²_F λmax(B)² + 2λmax(B), shape (S,) (n = 1)."""
    lam = problem.lam_max
    return _sq_norm(A) * lam**2 + 2 * lam


def mf_corrected_bound(problem: TripletProblem, A: np.ndarray) -> np.ndarray:
    """A valid bound on max|eig ∇²f_μ|: ‖A‖²_F ‖B‖₂²/μ + 2‖B‖₂ (n = 1, μ > 0).

    From ∇²f_μ = s(1−s)/μ ∇z∇zᵀ + 2s(I ⊗ B), s(1−s) ≤ 1/4, ‖∇z‖² = 4‖AB‖²_F ≤ 4‖A‖²_F‖B‖₂².
    """
    if problem.mu == 0:
        raise ValueError("mf_corrected needs mu > 0 (the hinge has no bounded curvature)")
    norm = problem.spectral_norm
    return _sq_norm(A) * norm**2 / problem.mu + 2 * norm


def mg_corrected_bound(problem: TripletProblem, A: np.ndarray) -> np.ndarray:
    """A valid bound on max|eig ∇²g_μ|: 2·max(‖u‖², ‖v‖²) + ‖A‖²_F ‖B‖₂²/μ (n = 1, μ > 0)."""
    problem.require_single("the corrected M_g")
    uu = (problem.u[:, 0] ** 2).sum(-1)
    vv = (problem.v[:, 0] ** 2).sum(-1)
    return 2 * np.maximum(uu, vv) + _sq_norm(A) * problem.spectral_norm**2 / problem.mu


def _mg(problem, A, G, f, t, cfg):
    return 1.0 / mg_bound(problem, A)


def _mf(problem, A, G, f, t, cfg):
    return 1.0 / mf_bound(problem, A)


def _mf_corrected(problem, A, G, f, t, cfg):
    return 1.0 / mf_corrected_bound(problem, A)


def eta_hat(problem: TripletProblem, A: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """η̂ = 1/(2·max(s, floor)·λmax(B)), shape (S,) (n = 1). Infinite when s underflows to 0."""
    problem.require_single("eta_hat")
    s = problem.activation(A)[:, 0]
    with np.errstate(divide="ignore"):
        return 1.0 / (2.0 * np.maximum(s, floor) * problem.lam_max)


def _eta_hat(problem, A, G, f, t, cfg):
    return eta_hat(problem, A)


def _eta_hat_safe(problem, A, G, f, t, cfg):
    return backtracking(problem, A, G, f, eta_hat(problem, A, floor=cfg.floor), cfg)


def _global_l(problem, A, G, f, t, cfg):
    if not hasattr(problem, "global_smoothness"):
        raise ConfigError(
            "rule 'global_l' needs a globally smooth objective (the contrastive loss); the "
            "triplet loss has no global smoothness constant"
        )
    return 1.0 / problem.global_smoothness()


def _constant(problem, A, G, f, t, cfg):
    return np.full(problem.batch, cfg.lr)


def _inv_sqrt(problem, A, G, f, t, cfg):
    return np.full(problem.batch, cfg.lr / np.sqrt(t + 1.0))


def backtracking(
    problem: TripletProblem,
    A: np.ndarray,
    G: np.ndarray,
    f: np.ndarray,
    eta0: np.ndarray,
    cfg: StepSettings,
) -> np.ndarray:
    """Armijo backtracking from ``eta0``: the largest η = eta0·βᵏ with f(A − ηG) ≤ f(A) − cη‖G‖².

    Instances that find no such step within ``max_halvings`` get η = 0 (no move).
    """
    eta = np.asarray(eta0, dtype=float).copy()
    g2 = _sq_norm(G)
    accepted = np.zeros(problem.batch, dtype=bool)
    for _ in range(cfg.max_halvings):
        with np.errstate(all="ignore"):
            trial = problem.loss(A - eta[:, None, None] * G)
            accepted = np.isfinite(trial) & (trial <= f - cfg.armijo_c * eta * g2)
        if accepted.all():
            break
        eta = np.where(accepted, eta, eta * cfg.armijo_beta)
    return np.where(accepted, eta, 0.0)


def _armijo(problem, A, G, f, t, cfg):
    return backtracking(problem, A, G, f, np.full(problem.batch, cfg.armijo_init), cfg)


def exact_single(
    problem: TripletProblem, A: np.ndarray, G: np.ndarray, cfg: StepSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Exact line search for one triplet (n = 1), in closed form: returns (η, unbounded).

    Along the ray, z(η) = z₀ − 2η·tr(GBAᵀ) + η²·tr(GBGᵀ) is a quadratic and f_μ is increasing in
    z, so the minimiser of f over η ≥ 0 is the minimiser of z: tr(GBAᵀ)/tr(GBGᵀ) when the
    curvature is positive, else unbounded (f → inf f along the ray; the step is ``max_step``).
    For G = 2sBw this is η* = wᵀB²w/(2s·wᵀB³w) — the seed's critical point, which is ≥ η̂.
    """
    B = problem.B
    slope = np.einsum("sdm,smk,sdk->s", G, B, A)
    curve = np.einsum("sdm,smk,sdk->s", G, B, G)
    unbounded = (curve <= 0) & (slope > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(curve > 0, np.maximum(slope / curve, 0.0), 0.0)
    return np.where(unbounded, cfg.max_step, eta), unbounded


def exact_general(
    problem: TripletProblem, A: np.ndarray, G: np.ndarray, cfg: StepSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Exact line search for any n: a log-spaced scan of η ∈ [0, max_step], then a golden-section
    search in the bracket around the best scan point, vectorised over the instances (one batched
    loss evaluation per iteration). Returns (η, unbounded) where unbounded marks a minimum at
    ``max_step``."""
    grid = np.concatenate([[0.0], np.logspace(-8, np.log10(cfg.max_step), 57)])
    with np.errstate(all="ignore"):
        values = np.stack([problem.loss(A - e * G) for e in grid], axis=1)
    best = np.nanargmin(values, axis=1)
    lo, hi = grid[np.maximum(best - 1, 0)], grid[np.minimum(best + 1, len(grid) - 1)]
    eta, f_best = grid[best], values[np.arange(problem.batch), best]

    def along(e: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            f = problem.loss(A - e[:, None, None] * G)
        return np.where(np.isfinite(f), f, np.inf)

    x1, x2 = hi - GOLDEN * (hi - lo), lo + GOLDEN * (hi - lo)
    f1, f2 = along(x1), along(x2)
    for _ in range(GOLDEN_ITERATIONS):
        left = f1 <= f2  # the minimum lies in [lo, x2]
        hi, lo = np.where(left, x2, hi), np.where(left, lo, x1)
        x2, f2, x1, f1 = (
            np.where(left, x1, lo + GOLDEN * (hi - lo)),
            np.where(left, f1, np.nan),
            np.where(left, hi - GOLDEN * (hi - lo), x2),
            np.where(left, np.nan, f2),
        )
        f1 = np.where(left, along(x1), f1)
        f2 = np.where(left, f2, along(x2))
    x, fx = np.where(f1 <= f2, x1, x2), np.minimum(f1, f2)
    better = fx <= f_best
    return np.where(better, x, eta), best == len(grid) - 1


def problem_row(problem: TripletProblem, s: int) -> TripletProblem:
    """Instance s of a batch, as a batch of one."""
    return TripletProblem(problem.u[s : s + 1], problem.v[s : s + 1], problem.alpha, problem.mu)


def exact_step(
    problem: TripletProblem, A: np.ndarray, G: np.ndarray, cfg: StepSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Exact line search: closed form for n = 1, scan + Brent otherwise. Returns (η, unbounded)."""
    if isinstance(problem, TripletProblem) and problem.n == 1:
        return exact_single(problem, A, G, cfg)
    return exact_general(problem, A, G, cfg)


def _exact(problem, A, G, f, t, cfg):
    return exact_step(problem, A, G, cfg)[0]


STEP_RULES: dict[str, StepRule] = {
    "mg": _mg,
    "mf": _mf,
    "mf_corrected": _mf_corrected,
    "eta_hat": _eta_hat,
    "eta_hat_safe": _eta_hat_safe,
    "global_l": _global_l,
    "constant": _constant,
    "inv_sqrt": _inv_sqrt,
    "armijo": _armijo,
    "exact": _exact,
}

SEED_RULES = ("mg", "mf", "eta_hat")
SINGLE_TRIPLET_RULES = ("mg", "mf", "mf_corrected", "eta_hat", "eta_hat_safe")
METHODS = ("nesterov", "sgd", "dca")
ALL_RULES = tuple(STEP_RULES) + METHODS


def eta_hat_iterations(problem: TripletProblem, A0: np.ndarray, tol: float) -> np.ndarray:
    """Closed-form count of η̂ steps to reach f_μ ≤ tol, shape (S,) (n = 1; −1 if never).

    Under η̂, A_t = A₀(I − B/λmax)ᵗ. B = uuᵀ − vvᵀ has rank ≤ 2 with eigenvalues λmax > 0 > λmin
    (indefinite B): the λmax component vanishes after one step and the λmin component grows by
    1 + κ per step, κ = |λmin|/λmax, so for t ≥ 1
        z_t − α = λmin ‖A₀e_min‖² (1 + κ)^{2t},
    and f_μ ≤ tol ⇔ z_t ≤ z* = μ·log(expm1(tol/μ)). Hence
        t* = max(1, ⌈log((z* − α)/(λmin‖A₀e_min‖²)) / (2 log(1 + κ))⌉)   (0 if f(A₀) ≤ tol),
    a q-superlinear rate: f_t ≈ exp(−C(1 + κ)^{2t}), ‖A_t‖ ~ (1 + κ)ᵗ without bound.
    """
    problem.require_single("eta_hat_iterations")
    lam, vecs = np.linalg.eigh(problem.B)
    lam_min, lam_max = lam[:, 0], lam[:, -1]
    c2 = (np.einsum("sdm,sm->sd", A0, vecs[:, :, 0]) ** 2).sum(-1)
    mu = problem.mu
    target = (np.log(np.expm1(tol / mu)) * mu if mu > 0 else 0.0) - problem.alpha
    with np.errstate(all="ignore"):
        kappa = -lam_min / lam_max
        steps = np.log(target / (lam_min * c2)) / (2 * np.log1p(kappa))
        t_star = np.maximum(1, np.ceil(steps - 1e-9))
    possible = (lam_min < 0) & (lam_max > 0) & (c2 > 0) & (target < 0)
    t_star = np.where(possible & np.isfinite(t_star), t_star, -1).astype(int)
    return np.where(problem.loss(A0) <= tol, 0, t_star)
