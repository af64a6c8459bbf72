"""The triplet objective of a linear embedding φ(A; x) = Ax, its DC parts and its smoothing.

For triplets (x_aᵢ, x_pᵢ, x_nᵢ), i = 1..n, with uᵢ = x_aᵢ − x_pᵢ, vᵢ = x_aᵢ − x_nᵢ,
Bᵢ = uᵢuᵢᵀ − vᵢvᵢᵀ, aᵢ = ‖Auᵢ‖², bᵢ = ‖Avᵢ‖² and zᵢ = aᵢ − bᵢ + α = tr(ABᵢAᵀ) + α:

- hinge            f(A)   = 1/n Σ max(0, zᵢ)
- DC parts         g(A)   = 1/n Σ max(aᵢ + α, bᵢ),    h(A) = 1/n Σ bᵢ,    f = g − h
- smoothed (μ > 0) g_μ(A) = 1/n Σ μ·LSE((aᵢ + α)/μ, bᵢ/μ),  f_μ = g_μ − h = 1/n Σ μ·softplus(zᵢ/μ)

μ = 0 means the hinge. Every function is vectorised over a leading batch of S independent
instances: ``A`` has shape (S, d, m) (d = 1 is the seed's vector w) and ``u``, ``v`` have shape
(S, n, m). Hessians are with respect to vec(A) in row-major order, shape (S, d·m, d·m).
Everything is evaluated with ``logaddexp`` / ``expit``, so it never overflows.

Reference: L. Jaffe, "Analysis of Gradient Descent on the Triplet Margin Loss" (EECS227C, 2020),
eqs. (3)–(14), (22), (25)–(28).

Example:
    >>> import numpy as np
    >>> u = np.array([[[1.0, 0.0]]]); v = np.array([[[0.0, 1.0]]])
    >>> A = np.array([[[1.0, 1.0]]])
    >>> float(smoothed_loss(A, u, v, alpha=0.0, mu=1.0)[0])  # softplus(1 − 1)
    0.6931471805599453
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from tripletlab.validation import check_nonnegative


def _projections(A: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Auᵢ, Avᵢ) for every instance and triplet, each of shape (S, n, d)."""
    At = np.swapaxes(A, 1, 2)  # batched GEMMs: several times faster than the einsum
    return np.matmul(u, At), np.matmul(v, At)


def squared_distances(A: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """aᵢ = ‖Auᵢ‖² and bᵢ = ‖Avᵢ‖², each of shape (S, n)."""
    Au, Av = _projections(A, u, v)
    return (Au * Au).sum(-1), (Av * Av).sum(-1)


def margins(A: np.ndarray, u: np.ndarray, v: np.ndarray, alpha: float) -> np.ndarray:
    """zᵢ = ‖Auᵢ‖² − ‖Avᵢ‖² + α, shape (S, n)."""
    a, b = squared_distances(A, u, v)
    return a - b + alpha


def hinge_loss(A: np.ndarray, u: np.ndarray, v: np.ndarray, alpha: float) -> np.ndarray:
    """f(A) = 1/n Σ max(0, zᵢ), shape (S,). Seed eq. (1)/(6)."""
    return np.maximum(margins(A, u, v, alpha), 0.0).mean(-1)


def dc_parts(
    A: np.ndarray, u: np.ndarray, v: np.ndarray, alpha: float, mu: float
) -> tuple[np.ndarray, np.ndarray]:
    """(g, h) with f = g − h: g = 1/n Σ μ·LSE((aᵢ+α)/μ, bᵢ/μ) (max for μ = 0), h = 1/n Σ bᵢ."""
    check_nonnegative(mu, "mu")
    a, b = squared_distances(A, u, v)
    g = np.maximum(a + alpha, b) if mu == 0 else mu * np.logaddexp((a + alpha) / mu, b / mu)
    return g.mean(-1), b.mean(-1)


def smoothed_loss(
    A: np.ndarray, u: np.ndarray, v: np.ndarray, alpha: float, mu: float
) -> np.ndarray:
    """f_μ(A) = 1/n Σ μ·softplus(zᵢ/μ) (the hinge for μ = 0), shape (S,).

    Equal to g_μ − h by the identity log(eᵃ + eᵇ) − b = softplus(a − b), but computed without
    the cancellation of two large numbers.
    """
    check_nonnegative(mu, "mu")
    z = margins(A, u, v, alpha)
    if mu == 0:
        return np.maximum(z, 0.0).mean(-1)
    return (mu * np.logaddexp(0.0, z / mu)).mean(-1)


def activation(z: np.ndarray, mu: float) -> np.ndarray:
    """sᵢ = ∂(μ·softplus(z/μ))/∂z = sigmoid(z/μ) (the seed's q), or the indicator z > 0 for μ = 0."""
    if mu == 0:
        return (z > 0).astype(z.dtype)
    return expit(z / mu)


def _weighted_outer(weights: np.ndarray, Ax: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Σᵢ wᵢ (Axᵢ) xᵢᵀ, shape (S, d, m)."""
    return np.matmul(np.swapaxes(Ax * weights[..., None], 1, 2), x)


def gradient(A: np.ndarray, u: np.ndarray, v: np.ndarray, alpha: float, mu: float) -> np.ndarray:
    """∇f_μ(A) = 2/n Σ sᵢ A Bᵢ with sᵢ = sigmoid(zᵢ/μ), shape (S, d, m). Seed eq. (27): 2qBw."""
    Au, Av = _projections(A, u, v)
    s = activation((Au * Au).sum(-1) - (Av * Av).sum(-1) + alpha, mu)
    n = u.shape[1]
    return 2.0 / n * (_weighted_outer(s, Au, u) - _weighted_outer(s, Av, v))


def dc_gradients(
    A: np.ndarray, u: np.ndarray, v: np.ndarray, alpha: float, mu: float
) -> tuple[np.ndarray, np.ndarray]:
    """(∇g_μ, ∇h): ∇g_μ = 2/n Σ A(pᵢuᵢuᵢᵀ + (1−pᵢ)vᵢvᵢᵀ) with pᵢ = sigmoid(zᵢ/μ); ∇h = 2/n Σ Avᵢvᵢᵀ."""
    Au, Av = _projections(A, u, v)
    p = activation((Au * Au).sum(-1) - (Av * Av).sum(-1) + alpha, mu)
    n = u.shape[1]
    grad_h = 2.0 / n * _weighted_outer(np.ones_like(p), Av, v)
    grad_g = 2.0 / n * (_weighted_outer(p, Au, u) + _weighted_outer(1.0 - p, Av, v))
    return grad_g, grad_h


def _weighted_gram(weights: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Σᵢ wᵢ xᵢxᵢᵀ for X of shape (S, n, k) → (S, k, k), as one batched GEMM."""
    return np.matmul(np.swapaxes(X, 1, 2) * weights[:, None, :], X)


def _kron_identity(M: np.ndarray, d: int) -> np.ndarray:
    """I_d ⊗ M for a batch of (S, m, m) matrices: the Hessian block structure of row-major vec(A)."""
    return np.einsum("ij,skl->sikjl", np.eye(d), M).reshape(M.shape[0], d * M.shape[1], -1)


def _margin_gradients(A: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """vec(∇zᵢ) = vec(2A Bᵢ) for every triplet, shape (S, n, d·m)."""
    Au, Av = _projections(A, u, v)
    grad = 2.0 * (np.einsum("snd,snm->sndm", Au, u) - np.einsum("snd,snm->sndm", Av, v))
    return grad.reshape(*grad.shape[:2], -1)


def hessian(A: np.ndarray, u: np.ndarray, v: np.ndarray, alpha: float, mu: float) -> np.ndarray:
    """∇²f_μ = 1/n Σ [sᵢ(1−sᵢ)/μ · ∇zᵢ∇zᵢᵀ + 2sᵢ (I_d ⊗ Bᵢ)], shape (S, d·m, d·m).

    For d = n = 1, μ = 1: 4q(1−q)BwwᵀB + 2qB (seed eq. 28). The Hessian of wᵀBw is 2B (not B
    as in seed eq. 15). For μ = 0 (hinge) this is the Hessian where it exists (off zᵢ = 0).
    """
    d, n = A.shape[1], u.shape[1]
    z = margins(A, u, v, alpha)
    s = activation(z, mu)
    curvature = np.zeros_like(s) if mu == 0 else s * (1.0 - s) / mu
    Z = _margin_gradients(A, u, v)
    outer = _weighted_gram(curvature, Z)
    S_B = _weighted_gram(s, u) - _weighted_gram(s, v)
    return (outer + 2.0 * _kron_identity(S_B, d)) / n


def dc_hessians(
    A: np.ndarray, u: np.ndarray, v: np.ndarray, alpha: float, mu: float
) -> tuple[np.ndarray, np.ndarray]:
    """(∇²g_μ, ∇²h), each (S, d·m, d·m).

    ∇²g_μ = 1/n Σ [2 I_d ⊗ (pᵢuᵢuᵢᵀ + (1−pᵢ)vᵢvᵢᵀ) + pᵢ(1−pᵢ)/μ · ∇zᵢ∇zᵢᵀ],  ∇²h = 1/n Σ 2 I_d ⊗ vᵢvᵢᵀ.
    The seed's ∇²g (section 2.4) drops the first term and doubles the cross term of the second.
    """
    d, n = A.shape[1], u.shape[1]
    p = activation(margins(A, u, v, alpha), mu)
    curvature = np.zeros_like(p) if mu == 0 else p * (1.0 - p) / mu
    Z = _margin_gradients(A, u, v)
    outer = _weighted_gram(curvature, Z)
    mix = _weighted_gram(p, u) + _weighted_gram(1.0 - p, v)
    vv = _weighted_gram(np.ones_like(p), v)
    return (outer + 2.0 * _kron_identity(mix, d)) / n, 2.0 * _kron_identity(vv, d) / n


def triplet_matrix(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """B = uuᵀ − vvᵀ for single triplets: u, v of shape (S, m) or (S, 1, m) → (S, m, m)."""
    u = u.reshape(u.shape[0], -1)
    v = v.reshape(v.shape[0], -1)
    return np.einsum("si,sj->sij", u, u) - np.einsum("si,sj->sij", v, v)


def lse_minus_b(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log(eᵃ + eᵇ) − b, the left side of the identity log(eᵃ + eᵇ) − b = softplus(a − b)."""
    return np.logaddexp(a, b) - b


def softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + eˣ), stable for any x."""
    return np.logaddexp(0.0, x)


def infimum_single(B: np.ndarray, alpha: float, mu: float, atol: float = 1e-12) -> np.ndarray:
    """inf_w f_μ(w) for one triplet (n = d = 1), shape (S,).

    inf = μ·softplus(α/μ) (α for the hinge) when B ⪰ 0, attained at w = 0; otherwise 0, which
    the hinge attains (any w with wᵀBw ≤ −α) and the smoothed loss only approaches as
    wᵀBw → −∞. For α = 0, μ = 1 this is the seed's eq. (21): log 2 or 0.
    """
    check_nonnegative(mu, "mu")
    lam_min = np.linalg.eigvalsh(B)[..., 0]
    at_zero = alpha if mu == 0 else mu * float(softplus(np.float64(alpha / mu)))
    return np.where(lam_min >= -atol, at_zero, 0.0)
