"""The true local smoothness of f_μ and g_μ along a trajectory, against the seed's bounds.

L_f(A) = max |eig ∇²f_μ(A)| is the local Lipschitz constant of ∇f_μ (both signs count: the
2sB term has a negative eigenvalue whenever B is indefinite). The seed bounds only the largest
eigenvalue, with λmax(B) in place of ‖B‖₂ = max|λ(B)|.

Example:
    >>> from tripletlab.lab.instances import seed_instance
    >>> problem, A0 = seed_instance(0)
    >>> local_smoothness(problem, A0[None]).shape
    (1, 1)
"""

from __future__ import annotations

import numpy as np

from tripletlab.lab import objective
from tripletlab.lab.problem import TripletProblem


def _max_abs_eig(H: np.ndarray) -> np.ndarray:
    eig = np.linalg.eigvalsh(H)
    return np.maximum(np.abs(eig[..., 0]), np.abs(eig[..., -1]))


def _span_basis(problem: TripletProblem, d: int) -> np.ndarray | None:
    """For n = d = 1 every Hessian of f_μ and g_μ maps into span{u, v} and vanishes on its
    complement, so the nonzero eigenvalues are those of QᵀHQ (2×2) for an orthonormal basis Q
    (S, m, 2) of the span. None where that reduction does not apply."""
    if problem.n != 1 or d != 1 or problem.m <= 2:
        return None
    stacked = np.stack([problem.u[:, 0], problem.v[:, 0]], axis=-1)
    return np.linalg.qr(stacked)[0]


def _reduced_hessians(problem: TripletProblem, A: np.ndarray, basis: np.ndarray):
    """QᵀHQ of ∇²f_μ and ∇²g_μ for n = d = 1, built from the 2-vectors Qᵀu, Qᵀv, Qᵀ∇z only."""
    u, v, w = problem.u[:, 0], problem.v[:, 0], A[:, 0]
    wu, wv = (w * u).sum(-1), (w * v).sum(-1)
    s = objective.activation(wu**2 - wv**2 + problem.alpha, problem.mu)
    c = np.zeros_like(s) if problem.mu == 0 else s * (1 - s) / problem.mu
    ru, rv = np.einsum("smk,sm->sk", basis, u), np.einsum("smk,sm->sk", basis, v)
    ry = 2 * (wu[:, None] * ru - wv[:, None] * rv)
    uu, vv = np.einsum("si,sj->sij", ru, ru), np.einsum("si,sj->sij", rv, rv)
    yy = c[:, None, None] * np.einsum("si,sj->sij", ry, ry)
    hf = yy + 2 * s[:, None, None] * (uu - vv)
    hg = yy + 2 * (s[:, None, None] * uu + (1 - s)[:, None, None] * vv)
    return hf, hg


def _along(problem: TripletProblem, params: np.ndarray, which: int) -> np.ndarray:
    out = np.full(params.shape[:2], np.nan)
    basis = _span_basis(problem, params.shape[2])
    for t, A in enumerate(params):
        ok = np.isfinite(A).all(axis=(1, 2))
        if not ok.any():
            continue
        if basis is not None:
            sub = TripletProblem(problem.u[ok], problem.v[ok], problem.alpha, problem.mu)
            H = _reduced_hessians(sub, A[ok], basis[ok])[which]
        elif which == 0:
            H = objective.hessian(A[ok], problem.u[ok], problem.v[ok], problem.alpha, problem.mu)
        else:
            H = objective.dc_hessians(
                A[ok], problem.u[ok], problem.v[ok], problem.alpha, problem.mu
            )[0]
        out[t, ok] = _max_abs_eig(H)
    return out


def local_smoothness(problem: TripletProblem, params: np.ndarray) -> np.ndarray:
    """max|eig ∇²f_μ(A_t)| for iterates ``params`` of shape (T, S, d, m) → (T, S). NaN stays NaN."""
    return _along(problem, params, 0)


def local_smoothness_g(problem: TripletProblem, params: np.ndarray) -> np.ndarray:
    """max|eig ∇²g_μ(A_t)| (g_μ is convex, so this is its largest eigenvalue) → (T, S)."""
    return _along(problem, params, 1)
