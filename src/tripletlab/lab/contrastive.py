"""The contrastive (pair) loss of a linear embedding through the lab's analysis.

For positive pair differences pᵢ (same class) and negative ones qⱼ (different classes), with
aᵢ = ‖Apᵢ‖², bⱼ = ‖Aqⱼ‖², margin ε and N = n₊ + n₋ pairs (DESIGN.md's first form):

- hinge      f(A)   = 1/N [Σᵢ aᵢ + Σⱼ max(0, ε − bⱼ)]
- DC parts   g(A)   = 1/N [Σᵢ aᵢ + Σⱼ max(ε, bⱼ)],   h(A) = 1/N Σⱼ bⱼ,   f = g − h
- smoothed   g_μ    = 1/N [Σᵢ aᵢ + Σⱼ μ·LSE(ε/μ, bⱼ/μ)],   f_μ = 1/N [Σᵢ aᵢ + Σⱼ μ·softplus((ε − bⱼ)/μ)]

A negative pair is the triplet term with u = 0, v = qⱼ, α = ε; the positive term is a plain
convex quadratic outside the softplus, so the seed's single-triplet tools (B, η̂) do not carry
over. What does carry over, and improves: with sⱼ = sigmoid((ε − bⱼ)/μ),

    ∇f_μ = 2/N [Σᵢ A pᵢpᵢᵀ − Σⱼ sⱼ A qⱼqⱼᵀ]
    ∇²f_μ = 1/N [2 I⊗Σᵢ pᵢpᵢᵀ + Σⱼ (sⱼ(1−sⱼ)/μ ∇bⱼ∇bⱼᵀ − 2sⱼ I⊗qⱼqⱼᵀ)],  ∇bⱼ = vec(2A qⱼqⱼᵀ)

and ‖∇bⱼ‖² = 4bⱼ‖qⱼ‖², so a negative pair contributes at most ‖qⱼ‖²·max(4sⱼ(1−sⱼ)bⱼ/μ, 2sⱼ),
and 4s(1−s)b/μ ≤ ε/μ + C with C = 4·max_t t·σ(t)σ(−t) ≈ 0.8955 (t = (b − ε)/μ): **the
contrastive loss is globally smooth**, with

    L = 1/N [2‖Σᵢ pᵢpᵢᵀ‖₂ + Σⱼ ‖qⱼ‖²·max(ε/μ + C, 2)]   (``global_smoothness``),

unlike the triplet loss (no global constant: ``claims_smoothness``): the softplus saturates
where bⱼ grows, while the triplet's ‖Au‖² − ‖Av‖² can stay near 0 with ‖A‖ → ∞. So gradient
descent with the constant step 1/L has the standard guarantee
min_{t<T} ‖∇f(A_t)‖² ≤ 2L(f(A₀) − inf f)/T.

Reference: R. Hadsell, S. Chopra, Y. LeCun (2006), CVPR; L. Jaffe (2020), section 3.2.

Example:
    >>> import numpy as np
    >>> problem = ContrastiveProblem(np.ones((1, 1, 2)), np.ones((1, 1, 2)), eps=1.0, mu=0.1)
    >>> problem.loss(np.zeros((1, 1, 2))).round(4).tolist()   # (0 + 0.1·softplus(10))/2
    [0.5]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from tripletlab.errors import ConfigError
from tripletlab.lab import objective

# C = 4·max_t t·σ(t)σ(−t), attained at t ≈ 1.5434 (the root of t·tanh(t/2) = 1).
_T = np.linspace(0.0, 5.0, 500_001)
SATURATION_CONSTANT = float(4 * np.max(_T * expit(_T) * expit(-_T)))


@dataclass(frozen=True)
class ContrastiveProblem:
    """S instances of the smoothed contrastive loss f_μ(A) (module docstring).

    Args:
        pos: positive pair differences, shape (S, n₊, m).
        neg: negative pair differences, shape (S, n₋, m).
        eps: the negative margin ε > 0.
        mu: smoothing μ > 0.
    """

    pos: np.ndarray
    neg: np.ndarray
    eps: float = 1.0
    mu: float = 0.1

    def __post_init__(self) -> None:
        if self.eps <= 0 or self.mu <= 0:
            raise ConfigError(f"eps and mu must be > 0; got eps={self.eps}, mu={self.mu}")
        if self.pos.ndim != 3 or self.neg.ndim != 3 or self.pos.shape[::2] != self.neg.shape[::2]:
            raise ConfigError(
                f"pos and neg must have shapes (S, n+, m), (S, n-, m); "
                f"got {self.pos.shape} and {self.neg.shape}"
            )

    @property
    def alpha(self) -> float:  # the margin, under the name the descent driver reports
        return self.eps

    @property
    def batch(self) -> int:
        return self.pos.shape[0]

    @property
    def n(self) -> int:
        return self.pos.shape[1] + self.neg.shape[1]

    @property
    def m(self) -> int:
        return self.pos.shape[2]

    def subset(self, rows: np.ndarray) -> ContrastiveProblem:
        """Pairs ``rows`` of the concatenation [positives, negatives] (a mini-batch)."""
        rows = np.asarray(rows)
        n_pos = self.pos.shape[1]
        pos, neg = rows[rows < n_pos], rows[rows >= n_pos] - n_pos
        return ContrastiveProblem(self.pos[:, pos], self.neg[:, neg], self.eps, self.mu)

    def project(self, Q: np.ndarray) -> ContrastiveProblem:
        """The data in the coordinates of the orthonormal columns of Q (S, m, r)."""
        return ContrastiveProblem(self.pos @ Q, self.neg @ Q, self.eps, self.mu)

    def data_rows(self) -> np.ndarray:
        return np.concatenate([self.pos, self.neg], axis=1)

    def _distances(self, A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        At = np.swapaxes(A, 1, 2)
        Ap, Aq = self.pos @ At, self.neg @ At
        return Ap, Aq, (Ap * Ap).sum(-1), (Aq * Aq).sum(-1)

    def activation(self, A: np.ndarray) -> np.ndarray:
        """sⱼ = sigmoid((ε − bⱼ)/μ) of the negatives, shape (S, n₋)."""
        return expit((self.eps - self._distances(A)[3]) / self.mu)

    def loss(self, A: np.ndarray) -> np.ndarray:
        _, _, a, b = self._distances(A)
        neg = self.mu * np.logaddexp(0.0, (self.eps - b) / self.mu)
        return (a.sum(-1) + neg.sum(-1)) / self.n

    def dc_values(self, A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(g_μ, h), each (S,)."""
        _, _, a, b = self._distances(A)
        g = a.sum(-1) + (self.mu * np.logaddexp(self.eps / self.mu, b / self.mu)).sum(-1)
        return g / self.n, b.sum(-1) / self.n

    def _weighted(self, w: np.ndarray, Ax: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.swapaxes(Ax * w[..., None], 1, 2) @ x

    def dc_gradients(self, A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(∇g_μ, ∇h), each (S, d, m)."""
        Ap, Aq, _, b = self._distances(A)
        s = expit((self.eps - b) / self.mu)
        grad_h = 2.0 / self.n * self._weighted(np.ones_like(s), Aq, self.neg)
        pos = self._weighted(np.ones(Ap.shape[:2]), Ap, self.pos)
        grad_g = 2.0 / self.n * (pos + self._weighted(1.0 - s, Aq, self.neg))
        return grad_g, grad_h

    def gradient(self, A: np.ndarray) -> np.ndarray:
        grad_g, grad_h = self.dc_gradients(A)
        return grad_g - grad_h

    def _hessian(self, A: np.ndarray, convex_part: bool) -> np.ndarray:
        _, Aq, _, b = self._distances(A)
        d = A.shape[1]
        s = expit((self.eps - b) / self.mu)
        grad_b = 2.0 * np.einsum("snd,snm->sndm", Aq, self.neg).reshape(*Aq.shape[:2], -1)
        outer = objective._weighted_gram(s * (1 - s) / self.mu, grad_b)
        pos = objective._weighted_gram(np.ones(self.pos.shape[:2]), self.pos)
        weight = (1.0 - s) if convex_part else -s
        neg = objective._weighted_gram(weight, self.neg)
        return (outer + 2.0 * objective._kron_identity(pos + neg, d)) / self.n

    def hessian(self, A: np.ndarray) -> np.ndarray:
        """∇²f_μ, shape (S, d·m, d·m)."""
        return self._hessian(A, convex_part=False)

    def g_hessian(self, A: np.ndarray) -> np.ndarray:
        """∇²g_μ ⪰ 0, shape (S, d·m, d·m)."""
        return self._hessian(A, convex_part=True)

    def global_smoothness(self) -> np.ndarray:
        """L ≥ max|eig ∇²f_μ(A)| for every A, shape (S,) (module docstring)."""
        pos = np.linalg.eigvalsh(objective._weighted_gram(np.ones(self.pos.shape[:2]), self.pos))
        neg = (self.neg**2).sum(-1) * max(self.eps / self.mu + SATURATION_CONSTANT, 2.0)
        return (2.0 * pos[:, -1] + neg.sum(-1)) / self.n


def contrastive_from_triplets(u: np.ndarray, v: np.ndarray, eps: float, mu: float):
    """The two pairs of each triplet: (anchor, positive) → pos = u, (anchor, negative) → neg = v."""
    return ContrastiveProblem(u, v, eps, mu)
