"""A batch of S independent triplet problems: the data (u, v), the margin α and the smoothing μ.

Example:
    >>> import numpy as np
    >>> p = TripletProblem(u=np.ones((1, 1, 2)), v=np.zeros((1, 1, 2)), alpha=0.0, mu=1.0)
    >>> p.loss(np.zeros((1, 1, 2))).round(4).tolist()   # softplus(0) = log 2
    [0.6931]
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from tripletlab.lab import objective
from tripletlab.validation import check_nonnegative


@dataclass(frozen=True)
class TripletProblem:
    """S instances of f_μ(A) = 1/n Σ μ·softplus((‖Auᵢ‖² − ‖Avᵢ‖² + α)/μ) (hinge for μ = 0).

    Args:
        u: anchor − positive differences, shape (S, n, m).
        v: anchor − negative differences, shape (S, n, m).
        alpha: margin α ≥ 0.
        mu: smoothing μ ≥ 0 (0 is the hinge).
    """

    u: np.ndarray
    v: np.ndarray
    alpha: float = 0.0
    mu: float = 1.0

    def __post_init__(self) -> None:
        check_nonnegative(self.alpha, "alpha")
        check_nonnegative(self.mu, "mu")
        if self.u.ndim != 3 or self.u.shape != self.v.shape:
            raise ValueError(
                f"u and v must both have shape (S, n, m); got {self.u.shape} and {self.v.shape}"
            )

    @property
    def batch(self) -> int:
        return self.u.shape[0]

    @property
    def n(self) -> int:
        return self.u.shape[1]

    @property
    def m(self) -> int:
        return self.u.shape[2]

    def subset(self, rows: np.ndarray) -> TripletProblem:
        """The same instances restricted to the triplets ``rows`` (a mini-batch)."""
        return TripletProblem(self.u[:, rows], self.v[:, rows], self.alpha, self.mu)

    def loss(self, A: np.ndarray) -> np.ndarray:
        return objective.smoothed_loss(A, self.u, self.v, self.alpha, self.mu)

    def gradient(self, A: np.ndarray) -> np.ndarray:
        return objective.gradient(A, self.u, self.v, self.alpha, self.mu)

    def hessian(self, A: np.ndarray) -> np.ndarray:
        return objective.hessian(A, self.u, self.v, self.alpha, self.mu)

    def dc_values(self, A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(g_μ(A), h(A)), each (S,)."""
        return objective.dc_parts(A, self.u, self.v, self.alpha, self.mu)

    def dc_gradients(self, A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(∇g_μ(A), ∇h(A)), each (S, d, m)."""
        return objective.dc_gradients(A, self.u, self.v, self.alpha, self.mu)

    def g_hessian(self, A: np.ndarray) -> np.ndarray:
        """∇²g_μ(A), shape (S, d·m, d·m) (positive semidefinite)."""
        return objective.dc_hessians(A, self.u, self.v, self.alpha, self.mu)[0]

    def data_rows(self) -> np.ndarray:
        """Every uᵢ and vᵢ, shape (S, 2n, m): the gradients' rows lie in their span."""
        return np.concatenate([self.u, self.v], axis=1)

    def project(self, Q: np.ndarray) -> TripletProblem:
        """The same problem on the data in the coordinates of the orthonormal columns of Q
        (S, m, r): uᵢ ↦ Qᵀuᵢ (exact when every uᵢ, vᵢ lies in the span of Q)."""
        return TripletProblem(
            np.einsum("snm,smk->snk", self.u, Q),
            np.einsum("snm,smk->snk", self.v, Q),
            self.alpha,
            self.mu,
        )

    def activation(self, A: np.ndarray) -> np.ndarray:
        """sᵢ = sigmoid(zᵢ/μ), shape (S, n) (the seed's q for n = 1)."""
        return objective.activation(objective.margins(A, self.u, self.v, self.alpha), self.mu)

    # --- single-triplet quantities (n = 1), used by the seed's step rules and bounds ----------

    def require_single(self, what: str) -> None:
        if self.n != 1:
            raise ValueError(f"{what} is defined for a single triplet (n = 1); got n = {self.n}")

    @cached_property
    def B(self) -> np.ndarray:
        """B = uuᵀ − vvᵀ, shape (S, m, m) (n = 1 only)."""
        self.require_single("B")
        return objective.triplet_matrix(self.u, self.v)

    @cached_property
    def eigenvalues(self) -> np.ndarray:
        """Eigenvalues of B in ascending order, shape (S, m)."""
        return np.linalg.eigvalsh(self.B)

    @property
    def lam_max(self) -> np.ndarray:
        return self.eigenvalues[:, -1]

    @property
    def lam_min(self) -> np.ndarray:
        return self.eigenvalues[:, 0]

    @property
    def spectral_norm(self) -> np.ndarray:
        """‖B‖₂ = max |λ| (≠ λmax(B) when |λmin| > λmax)."""
        return np.maximum(np.abs(self.lam_min), np.abs(self.lam_max))

    def infimum(self) -> np.ndarray:
        """inf f_μ for n = 1: μ·softplus(α/μ) if B ⪰ 0 else 0 (see objective.infimum_single)."""
        return objective.infimum_single(self.B, self.alpha, self.mu)
