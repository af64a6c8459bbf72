"""The seed's convergence claims (sections 2.6, 2.8–2.10) for one triplet, checked numerically.

Notation (n = d = 1, α = 0, μ = 1 unless said): f(w) = softplus(wᵀBw), q = sigmoid(wᵀBw),
∇f = 2qBw, and a gradient step w⁺ = w − η∇f changes wᵀBw by
b_η = wᵀ(4η²q²B³ − 4ηqB²)w, so that exactly

    f(w⁺) − f(w) = log(q·e^{b_η} + 1 − q)                                   (§2.6)

(for any α, μ: μ·log(s·e^{b_η/μ} + 1 − s), s = sigmoid(z/μ)). The descent condition
f(w⁺) ≤ f(w) + c therefore holds exactly for c ≥ log(q e^{b_η} + 1 − q); the seed's
"select c < log(…)" is the wrong way round (any such c violates it).

§2.8: under η̂, w_t = (I − B/λmax)ᵗ w⁰. For B = uuᵀ − vvᵀ indefinite (rank 2, λmax > 0 > λmin,
κ = |λmin|/λmax) the exact norm is, for t ≥ 1,

    ‖w_t‖² = ‖w⁰‖² − c_max² − c_min² + c_min²(1 + κ)^{2t},  c = eigenvector coordinates of w⁰,

while the seed's bound is ‖(I − B/λmax)ᵗ‖_F‖w⁰‖ = √(m − 2 + (1 + κ)^{2t})·‖w⁰‖. The bound holds
and is tight in rate (bound/‖w_t‖ → ‖w⁰‖/|c_min|), but both grow like (1 + κ)ᵗ: it bounds a
divergence, not a convergence — there is no w* whose norm it could be compared with.

§2.9: with η = 1/λmax and X = (1 − q)‖∇f‖²/(qλmax), the seed correctly gets
f(w⁺) − f(w) ≤ log(q e^{−X} + 1 − q), then writes log(q e^{X} + 1 − q) ≤ f(w) − f(w⁺). That
needs (q e^{−X} + 1 − q)(q e^{X} + 1 − q) ≤ 1, but the product is
1 + q(1 − q)(e^X + e^{−X} − 2) ≥ 1: the step is invalid. What holds, by log(1 + x) ≤ x and
1 − e^{−X} ≥ (1 − e^{−1})·min(X, 1):

    f(w) − f(w⁺) ≥ q(1 − e^{−X}) ≥ (1 − e^{−1})·min((1 − q)‖∇f‖²/λmax, q),

and summed over t, Σ_t min((1 − q_t)‖∇f_t‖²/λmax, q_t) ≤ (f(w⁰) − inf f)/(1 − e^{−1}), with
q_t = 1 − e^{−f_t}: each iterate is eventually near-stationary *or* near-optimal.

§2.10: the seed compares with f(w*) = softplus(w*ᵀBw*), but for indefinite B no minimiser
exists (f > 0 = inf f everywhere). Under η̂ the function value is known exactly instead:
f(w_t) = μ·softplus((α + λmin c_min²(1 + κ)^{2t})/μ) for t ≥ 1, i.e.
log f_{t+1} ≈ (1 + κ)² log f_t (f_{t+1} ≈ f_t^{(1+κ)²}).

Reference: L. Jaffe (2020), sections 2.6–2.10.

Example:
    >>> float(log_argument_product(0.5, 5.0).round(2))   # ≥ 1, so the §2.9 step fails
    37.6
"""

from __future__ import annotations

import numpy as np

from tripletlab.lab.problem import TripletProblem


def quadratic_change(problem: TripletProblem, w: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """b_η = z(w − η∇f) − z(w) = wᵀ(4η²s²B³ − 4ηsB²)w, shape (S,) (n = d = 1)."""
    B, x = problem.B, w[:, 0]
    s = problem.activation(w)[:, 0]
    Bx = np.einsum("sij,sj->si", B, x)
    B2 = (Bx * Bx).sum(-1)
    B3 = np.einsum("si,sij,sj->s", Bx, B, Bx)
    return 4 * eta**2 * s**2 * B3 - 4 * eta * s * B2


def predicted_change(problem: TripletProblem, w: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """μ·log(s·e^{b_η/μ} + 1 − s): the exact f(w⁺) − f(w) of §2.6, computed stably, shape (S,)."""
    s = problem.activation(w)[:, 0]
    b = quadratic_change(problem, w, eta) / problem.mu
    # log(s e^b + 1 − s) = logaddexp(log s + b, log(1 − s)), finite for s in (0, 1)
    with np.errstate(divide="ignore"):
        return problem.mu * np.logaddexp(np.log(s) + b, np.log1p(-s))


def log_argument_product(q: np.ndarray | float, X: np.ndarray | float) -> np.ndarray:
    """(q e^{−X} + 1 − q)(q e^{X} + 1 − q) = 1 + q(1−q)(e^X + e^{−X} − 2) ≥ 1 (§2.9)."""
    q, X = np.asarray(q, float), np.asarray(X, float)
    return (q * np.exp(-X) + 1 - q) * (q * np.exp(X) + 1 - q)


def seed_log_gap_grid(qs: np.ndarray, Xs: np.ndarray) -> np.ndarray:
    """−log(q e^{−X} + 1 − q) − log(q e^{X} + 1 − q) on a grid, shape (len(qs), len(Xs)).

    The seed's step needs this ≥ 0; it equals −log(product) ≤ 0.
    """
    return -np.log(log_argument_product(qs[:, None], Xs[None, :]))


def section_29_step(problem: TripletProblem, w: np.ndarray) -> dict[str, np.ndarray]:
    """One step η = 1/λmax from w (α = 0, μ = 1): the decrease and every bound of §2.9, (S,) each.

    Keys: ``decrease`` f(w) − f(w⁺); ``seed_valid`` −log(q e^{−X} + 1 − q) (a true lower bound);
    ``seed_claimed`` log(q e^{X} + 1 − q) (the seed's invalid one); ``corrected``
    (1 − e^{−1})·min((1 − q)‖∇f‖²/λmax, q); ``q``, ``X``, ``grad_sq``.
    """
    q = problem.activation(w)[:, 0]
    G = problem.gradient(w)
    grad_sq = (G * G).sum(axis=(1, 2))
    lam = problem.lam_max
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        X = (1 - q) * grad_sq / (q * lam)
        w_next = w - (1.0 / lam)[:, None, None] * G
        decrease = problem.loss(w) - problem.loss(w_next)
        seed_valid = -np.log(q * np.exp(-X) + 1 - q)
        seed_claimed = np.log(q * np.exp(X) + 1 - q)
    corrected = (1 - np.exp(-1.0)) * np.minimum((1 - q) * grad_sq / lam, q)
    return {
        "decrease": decrease,
        "seed_valid": seed_valid,
        "seed_claimed": seed_claimed,
        "corrected": corrected,
        "q": q,
        "X": X,
        "grad_sq": grad_sq,
    }


def eta_hat_closed_form(problem: TripletProblem, w0: np.ndarray, t: int) -> dict[str, np.ndarray]:
    """For t ≥ 1 η̂ steps from w0 (n = d = 1, indefinite B): the exact ‖w_t‖, f(w_t) and the
    seed's §2.8 bound √(m − 2 + (1 + κ)^{2t})·‖w⁰‖, each of shape (S,)."""
    if t < 1:
        raise ValueError(f"t must be >= 1; got {t}")
    lam, vecs = np.linalg.eigh(problem.B)
    x = w0[:, 0]
    c_min = np.einsum("si,si->s", x, vecs[:, :, 0])
    c_max = np.einsum("si,si->s", x, vecs[:, :, -1])
    with np.errstate(over="ignore"):  # (1 + κ)^{2t} may overflow to inf: the norm diverges
        growth = (1 - lam[:, 0] / lam[:, -1]) ** (2 * t)
    norm0_sq = (x * x).sum(-1)
    norm_sq = norm0_sq - c_max**2 - c_min**2 + c_min**2 * growth
    z = problem.alpha + lam[:, 0] * c_min**2 * growth
    mu = problem.mu
    value = np.maximum(z, 0.0) if mu == 0 else mu * np.logaddexp(0.0, z / mu)
    return {
        "norm": np.sqrt(np.maximum(norm_sq, 0.0)),
        "loss": value,
        "seed_bound": np.sqrt(problem.m - 2 + growth) * np.sqrt(norm0_sq),
        "rate_limit": np.sqrt(norm0_sq) / np.abs(c_min),
    }
