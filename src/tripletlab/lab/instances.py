"""Reproducible triplet instances: the seed's NumPy legacy-RNG protocol, Gaussian classes, digits.

The seed's protocol (issue 5), exactly these draws from NumPy's legacy global generator::

    numpy.random.seed(seed)
    x_a, x_p, x_n = numpy.random.rand(3, m)     # 3·m uniform [0, 1) draws, row by row
    w0 = numpy.random.rand(m)                   # the next m draws (d = 1)
    u, v = x_a − x_p, x_a − x_n

For d > 1 the initial matrix is ``numpy.random.rand(d, m)`` in place of ``rand(m)`` (the same
stream, so its first row is the d = 1 w0). ``numpy.random.RandomState(seed)`` gives the same stream as
``numpy.random.seed(seed)`` without touching the global generator, so it is used here.
Figure 1 uses seed 1 (only the triplet), figure 2 seed 0 (triplet and w0).

Example:
    >>> problem, A0 = seed_instance(0, m=2)
    >>> A0.shape, problem.u.shape
    ((1, 1, 2), (1, 1, 2))
"""

from __future__ import annotations

import numpy as np

from tripletlab.lab.problem import TripletProblem


def seed_draw(seed: int, m: int = 2, d: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(x_a, x_p, x_n) of shape (3, m) and A0 of shape (d, m), drawn as the module docstring says."""
    rng = np.random.RandomState(seed)
    points = rng.rand(3, m)
    return points, rng.rand(d, m)


def seed_instance(
    seed: int, m: int = 2, d: int = 1, alpha: float = 0.0, mu: float = 1.0
) -> tuple[TripletProblem, np.ndarray]:
    """One seed-protocol triplet as a batch of S = 1: (problem, A0 of shape (1, d, m))."""
    return seed_batch([seed], m=m, d=d, alpha=alpha, mu=mu)


def seed_batch(
    seeds: list[int] | np.ndarray, m: int = 2, d: int = 1, alpha: float = 0.0, mu: float = 1.0
) -> tuple[TripletProblem, np.ndarray]:
    """Many seed-protocol instances stacked for vectorised runs: u, v (S, 1, m), A0 (S, d, m)."""
    draws = [seed_draw(int(s), m, d) for s in seeds]
    points = np.stack([p for p, _ in draws])
    A0 = np.stack([a for _, a in draws])
    u = (points[:, 0] - points[:, 1])[:, None, :]
    v = (points[:, 0] - points[:, 2])[:, None, :]
    return TripletProblem(u, v, alpha, mu), A0


def labelled_triplets(
    x: np.ndarray, labels: np.ndarray, n: int, rng: np.random.RandomState
) -> tuple[np.ndarray, np.ndarray]:
    """n random valid triplets (anchor, positive of its class ≠ anchor, negative of another class).

    Returns u = x_a − x_p and v = x_a − x_n, each of shape (n, m).
    """
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2 or counts.max() < 2:
        raise ValueError("labelled_triplets needs >= 2 classes and a class with >= 2 samples")
    usable = np.flatnonzero(np.isin(labels, classes[counts >= 2]))
    anchors = rng.choice(usable, size=n)
    u = np.empty((n, x.shape[1]))
    v = np.empty((n, x.shape[1]))
    for k, a in enumerate(anchors):  # set-up only, n is small; never in an optimisation loop
        same = np.flatnonzero((labels == labels[a]) & (np.arange(len(labels)) != a))
        other = np.flatnonzero(labels != labels[a])
        u[k] = x[a] - x[rng.choice(same)]
        v[k] = x[a] - x[rng.choice(other)]
    return u, v


def gaussian_instance(
    seed: int,
    n: int = 200,
    m: int = 5,
    d: int = 2,
    classes: int = 3,
    separation: float = 2.0,
    alpha: float = 0.1,
    mu: float = 0.1,
) -> tuple[TripletProblem, np.ndarray]:
    """n triplets from `classes` isotropic unit Gaussians in R^m with centres ~ N(0, separation²).

    Draws (RandomState(seed)): centres randn(classes, m)·separation, then 50 points per class,
    then the triplets, then A0 = randn(d, m)/√m.
    """
    rng = np.random.RandomState(seed)
    centres = rng.randn(classes, m) * separation
    labels = np.repeat(np.arange(classes), 50)
    x = centres[labels] + rng.randn(len(labels), m)
    u, v = labelled_triplets(x, labels, n, rng)
    A0 = rng.randn(d, m) / np.sqrt(m)
    return TripletProblem(u[None], v[None], alpha, mu), A0[None]


def digits_instance(
    seed: int, n: int = 500, d: int = 2, alpha: float = 0.1, mu: float = 0.1
) -> tuple[TripletProblem, np.ndarray]:
    """n triplets from scikit-learn's bundled 8×8 digits (m = 64, pixels scaled to [0, 1]).

    Draws (RandomState(seed)): the triplets, then A0 = randn(d, 64)/8.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    x = data.data / 16.0
    rng = np.random.RandomState(seed)
    u, v = labelled_triplets(x, data.target, n, rng)
    A0 = rng.randn(d, x.shape[1]) / np.sqrt(x.shape[1])
    return TripletProblem(u[None], v[None], alpha, mu), A0[None]


def embed_with_bias(A: np.ndarray, bias: np.ndarray, x: np.ndarray) -> np.ndarray:
    """φ(x) = Ax + b for x of shape (S, n, m), A (S, d, m), b (S, d) → (S, n, d).

    The triplet loss only sees differences φ(x_a) − φ(x_p) = A(x_a − x_p): the bias cancels, so
    it has zero gradient and does not change the loss (seed's future work, answered).
    """
    return np.einsum("sdm,snm->snd", A, x) + bias[:, None, :]
