"""DCA, the convex–concave procedure, on the DC form f_μ = g_μ − h of the triplet objective.

Each outer step linearises the concave part −h at the current A_k and minimises the convex
remainder exactly:

    A_{k+1} = argmin_X  φ_k(X) = g_μ(X) − ⟨∇h(A_k), X⟩.

Because h is convex, h(X) ≥ h(A_k) + ⟨∇h(A_k), X − A_k⟩, so f_μ(A_{k+1}) ≤ φ_k(A_{k+1}) + c_k
≤ φ_k(A_k) + c_k = f_μ(A_k): **every step descends, whatever the step size** — there is none —
and it suffices that the inner solver decreases φ_k. The inner solver is damped Newton on φ_k
(gradient ∇g_μ − ∇h(A_k), Hessian ∇²g_μ ⪰ 0 from ``objective``), with Armijo backtracking,
stopped (after one final full Newton step) when the Newton decrement rᵀH⁺r falls below
``inner_tol``·max(1, |φ|), or after ``inner_iterations``. ∇²g_μ is singular off the span of the data, where ∇φ_k has no component
either, so the Newton system is solved by a pseudo-inverse (minimum-norm direction): A keeps its
component orthogonal to the data, like every gradient rule.

For one triplet the subproblem can be read off: with a = wᵀu, β = wᵀv free (u, v independent),
φ is minimised at a = 0 and β·sigmoid(β²) = vᵀw_k (μ = 1, α = 0) — so |β| grows only by the
factor 1/sigmoid(β²) → 1 per step, f ≈ e^{−β²} decays like 1/k: DCA descends monotonically
but sublinearly here, because linearising h discards exactly the negative curvature that η̂
exploits. The lab measures it in the sweep.

μ = 0 (the hinge) makes g non-smooth; this solver needs μ > 0.

Reference: P. D. Tao, L. T. H. An (1997), "Convex analysis approach to D.C. programming";
A. L. Yuille, A. Rangarajan (2003), "The concave-convex procedure"; T. Lipp, S. Boyd (2016);
K. Khamaru, M. Wainwright (2018), ICML.

Example:
    >>> from tripletlab.lab.instances import seed_instance
    >>> problem, A0 = seed_instance(0)
    >>> A1 = dca_step(problem, A0)
    >>> bool(problem.loss(A1)[0] < problem.loss(A0)[0])
    True
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from tripletlab.errors import ConfigError

# Inner damped Newton: stop at this Newton decrement, after this many iterations, with these
# Armijo constants (standard values: Boyd & Vandenberghe, sec. 9.5).
INNER_TOL = 1e-12  # relative to max(1, |φ|): below it rounding hides the decrease
INNER_ITERATIONS = 50
ARMIJO_C = 0.25
ARMIJO_BETA = 0.5
MAX_HALVINGS = 50
# Eigenvalues of ∇²g below this fraction of the largest count as the null space off the data.
PINV_RCOND = 1e-13


class DCProblem(Protocol):
    """What DCA needs of a problem: the convex parts, their gradients and ∇²g."""

    @property
    def mu(self) -> float: ...

    def dc_values(self, A: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def dc_gradients(self, A: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def g_hessian(self, A: np.ndarray) -> np.ndarray: ...

    def data_rows(self) -> np.ndarray: ...

    def project(self, Q: np.ndarray) -> DCProblem: ...


def data_basis(problem: DCProblem, m: int) -> np.ndarray | None:
    """An orthonormal basis Q (S, m, r) of the span of the data vectors, or None when r ≥ m.

    g_μ and h see A only through A·xᵢ for the data vectors xᵢ ∈ span(Q), so the subproblem is the
    same problem on the projected data Qᵀxᵢ in the r-dimensional coordinates Y = AQ: an r-column
    Newton system instead of an m-column one.
    """
    rows = problem.data_rows()  # (S, k, m)
    if rows.shape[1] >= m:
        return None
    return np.linalg.qr(np.swapaxes(rows, 1, 2))[0]


def _pairing(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    return (X * Y).sum(axis=(1, 2))


def dca_step(
    problem: DCProblem,
    A: np.ndarray,
    inner_iterations: int = INNER_ITERATIONS,
    inner_tol: float = INNER_TOL,
) -> np.ndarray:
    """One DCA step from A (S, d, m): the inner damped-Newton minimiser of g_μ − ⟨∇h(A), ·⟩."""
    if problem.mu <= 0:
        raise ConfigError("dca needs mu > 0: the hinge's convex part g is not differentiable")
    _, grad_h = problem.dc_gradients(A)
    Q = data_basis(problem, A.shape[2])
    if Q is None:
        return _newton(problem, A, grad_h, inner_iterations, inner_tol)
    Y0 = np.einsum("sdm,smk->sdk", A, Q)
    Y = _newton(
        problem.project(Q), Y0, np.einsum("sdm,smk->sdk", grad_h, Q), inner_iterations, inner_tol
    )
    return A + np.einsum("sdk,smk->sdm", Y - Y0, Q)


def _newton(
    problem: DCProblem, X: np.ndarray, grad_h: np.ndarray, iterations: int, tol: float
) -> np.ndarray:
    """Damped Newton on φ(X) = g_μ(X) − ⟨grad_h, X⟩ from X, per instance, with a stop mask."""

    def phi(X: np.ndarray) -> np.ndarray:
        return problem.dc_values(X)[0] - _pairing(grad_h, X)

    S = X.shape[0]
    value = phi(X)
    stalled = np.zeros(S, dtype=bool)  # the line search found no decrease: φ is flat to rounding
    done = np.zeros(S, dtype=bool)
    for _ in range(iterations):
        r = (problem.dc_gradients(X)[0] - grad_h).reshape(S, -1)
        pinv = np.linalg.pinv(problem.g_hessian(X), rcond=PINV_RCOND, hermitian=True)
        D = -np.einsum("sij,sj->si", pinv, r).reshape(X.shape)
        decrement = -(r * D.reshape(S, -1)).sum(-1)  # rᵀH⁺r ≥ 0
        small = decrement <= tol * np.maximum(1.0, np.abs(value))
        # In the quadratic region the φ-decrease is below rounding, so the line search cannot
        # judge it; one full Newton step there takes the gradient from ~√tol to ~tol.
        polish = small & ~stalled & ~done
        X = X + polish[:, None, None] * D
        done |= polish
        active = ~small & ~stalled & ~done
        if not active.any():
            break
        step = np.where(active, 1.0, 0.0)
        for _ in range(MAX_HALVINGS):
            with np.errstate(all="ignore"):
                trial = phi(X + step[:, None, None] * D)
            ok = np.isfinite(trial) & (trial <= value - ARMIJO_C * step * decrement)
            if (ok | ~active).all():
                break
            step = np.where(ok | ~active, step, step * ARMIJO_BETA)
        stalled |= active & ~ok
        X = X + np.where(ok & active, step, 0.0)[:, None, None] * D
        value = phi(X)
    return X
