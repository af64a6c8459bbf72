"""The seed's smoothness claims (sections 2.4–2.5), checked on random instances.

- §2.4 bounds the cross term by |zᵀ(uvᵀ + vuᵀ)z| ≤ 2|uᵀv|‖z‖². The symmetric rank-2 matrix
  uvᵀ + vuᵀ has eigenvalues uᵀv ± ‖u‖‖v‖, so the true supremum over unit z is
  |uᵀv| + ‖u‖‖v‖ ≥ 2|uᵀv|, with equality only for parallel u, v: the inequality fails for every
  linearly independent pair. The correct bound is (|uᵀv| + ‖u‖‖v‖)‖z‖² ≤ 2‖u‖‖v‖‖z‖².
- §2.5 calls f "M_f-smooth" with the iterate-dependent M_f(w) and then uses results (the
  1/M descent lemma, Lee et al. 2016) that need one global constant. None exists: on the cone
  wᵀBw = −α the activation is s = 1/2 and ∇²f_μ(t·w₀) = t²·Bw₀w₀ᵀB/μ + B, whose largest
  eigenvalue grows like t²‖Bw₀‖²/μ. With w₀ = e_max/√λmax + e_min/√|λmin| (w₀ᵀBw₀ = 0) the
  limit of λmax(∇²f(t·w₀))/t² is (λmax + |λmin|)/μ. What holds: f_μ is L_R-smooth on the ball
  ‖w‖ ≤ R with L_R = R²‖B‖₂²/μ + 2‖B‖₂ (the corrected M̃_f at radius R).
- "M_f is usually better than M_g" (end of §2.5): compared at w⁰ per seed.

Reference: L. Jaffe (2020), sections 2.4–2.5; J. D. Lee et al. (2016), COLT.

Example:
    >>> import numpy as np
    >>> sup, seed_bound = cross_term_norms(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))
    >>> float(sup[0]), float(seed_bound[0])   # u ⊥ v: the seed's bound is 0, the truth 1
    (1.0, 0.0)
"""

from __future__ import annotations

import numpy as np

from tripletlab.lab.instances import seed_batch
from tripletlab.lab.problem import TripletProblem
from tripletlab.lab.smoothness import local_smoothness
from tripletlab.lab.step_rules import mf_bound, mg_bound


def cross_term_norms(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sup over unit z of |zᵀ(uvᵀ + vuᵀ)z|, the seed's bound 2|uᵀv|) for u, v of shape (S, m).

    The supremum is the spectral norm of uvᵀ + vuᵀ, computed by ``eigvalsh`` (not the closed
    form |uᵀv| + ‖u‖‖v‖, which the tests compare it with).
    """
    C = np.einsum("si,sj->sij", u, v)
    eig = np.linalg.eigvalsh(C + np.swapaxes(C, 1, 2))
    sup = np.maximum(np.abs(eig[:, 0]), np.abs(eig[:, -1]))
    return sup, 2.0 * np.abs((u * v).sum(-1))


def null_cone_direction(problem: TripletProblem) -> np.ndarray:
    """w₀ = e_max/√λmax + e_min/√|λmin| with w₀ᵀBw₀ = 0, shape (S, 1, m) (indefinite B, n = 1)."""
    lam, vecs = np.linalg.eigh(problem.B)
    w0 = vecs[:, :, -1] / np.sqrt(lam[:, -1:]) + vecs[:, :, 0] / np.sqrt(-lam[:, :1])
    return w0[:, None, :]


def hessian_growth_on_null_cone(problem: TripletProblem, scales: np.ndarray) -> np.ndarray:
    """max|eig ∇²f_μ(t·w₀)|/t² for each scale t, shape (len(scales), S) (α = 0: s = 1/2 there).

    Tends to (λmax + |λmin|)/μ = ‖Bw₀‖²/μ: no global smoothness constant exists.
    """
    w0 = null_cone_direction(problem)
    params = np.stack([t * w0 for t in scales])
    return local_smoothness(problem, params) / np.asarray(scales, float)[:, None] ** 2


def mf_vs_mg_at_start(seeds: int, m: int, first_seed: int = 0) -> dict:
    """How often the seed's M_f(w⁰) is below (tighter than) M_g(w⁰) over the seed protocol."""
    problem, A0 = seed_batch(np.arange(first_seed, first_seed + seeds), m=m)
    mf, mg = mf_bound(problem, A0), mg_bound(problem, A0)
    return {
        "m": m,
        "seeds": seeds,
        "mf_below_mg": int((mf < mg).sum()),
        "median_mf_over_mg": float(np.median(mf / mg)),
    }


def top_eigenvalue_counterexample() -> dict:
    """B = diag(0.01, −1) (u = (0.1, 0), v = (0, 1)), w = (0, √2): the largest eigenvalue of
    ∇²f itself (not only the negative one) exceeds the seed's M_f = ‖w‖²λmax² + 2λmax."""
    problem = TripletProblem(
        u=np.array([[[0.1, 0.0]]]), v=np.array([[[0.0, 1.0]]]), alpha=0.0, mu=1.0
    )
    w = np.array([[[0.0, np.sqrt(2.0)]]])
    eig = np.linalg.eigvalsh(problem.hessian(w))[0]
    return {
        "B": np.diag([0.01, -1.0]).tolist(),
        "w": w[0, 0].tolist(),
        "hessian_eigenvalues": eig.tolist(),
        "M_f": float(mf_bound(problem, w)[0]),
    }
