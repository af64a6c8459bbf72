"""DCA / the convex–concave procedure: exact subproblem solutions, monotone descent, the hinge."""

import numpy as np
import pytest
from scipy.special import expit

from tripletlab.errors import TripletlabError
from tripletlab.lab.dca import dca_step
from tripletlab.lab.descent import run_descent
from tripletlab.lab.instances import gaussian_instance, seed_batch

SEEDS = np.arange(300)


@pytest.mark.parametrize("m,alpha,mu", [(2, 0.0, 1.0), (5, 0.0, 1.0), (5, 0.1, 0.1)])
def test_subproblem_is_solved_exactly(m, alpha, mu):
    problem, A = seed_batch(SEEDS, m=m, alpha=alpha, mu=mu)
    X = dca_step(problem, A)
    grad_g, _ = problem.dc_gradients(X)
    _, grad_h = problem.dc_gradients(A)
    residual = np.sqrt(((grad_g - grad_h) ** 2).sum(axis=(1, 2)))
    scale = np.sqrt((grad_h**2).sum(axis=(1, 2)))
    assert (residual <= 1e-6 * np.maximum(scale, 1.0)).mean() > 0.99
    # the component of A orthogonal to the data is kept (minimum-norm Newton steps)
    if m > 2:
        Q = np.linalg.qr(np.swapaxes(problem.data_rows(), 1, 2))[0]
        perp = lambda Z: Z - np.einsum("sdk,smk->sdm", np.einsum("sdm,smk->sdk", Z, Q), Q)  # noqa: E731
        np.testing.assert_allclose(perp(X), perp(A), atol=1e-10)


def test_single_triplet_subproblem_in_closed_form():
    """For μ = 1, α = 0: the minimiser has wᵀu = 0 and β·sigmoid(β²) = vᵀw_k, β = wᵀv."""
    problem, A = seed_batch(SEEDS, m=2)
    X = dca_step(problem, A)
    u, v = problem.u[:, 0], problem.v[:, 0]
    a = (X[:, 0] * u).sum(-1)
    beta = (X[:, 0] * v).sum(-1)
    c = (A[:, 0] * v).sum(-1)
    np.testing.assert_allclose(a, 0.0, atol=1e-6)
    np.testing.assert_allclose(beta * expit(beta**2), c, atol=1e-8)
    assert (np.abs(beta) >= np.abs(c) - 1e-12).all()


@pytest.mark.parametrize("m", [2, 5])
def test_dca_descends_monotonically_but_sublinearly(m):
    problem, A0 = seed_batch(SEEDS, m=m)
    traj = run_descent(problem, A0, "dca", 40)
    assert traj.monotone().all() and np.isfinite(traj.loss).all()
    f = traj.loss
    assert (f[40] < f[10]).all()
    # f_k·k stays bounded away from 0: no linear or faster rate (median f_40 ≈ 2e-3)
    assert 5e-4 < np.median(f[40]) < 1e-2
    assert np.median(f[40] * 40) > 0.5 * np.median(f[20] * 20)


def test_dca_on_labelled_triplets_descends():
    problem, A0 = gaussian_instance(0, n=40, m=4, d=2)
    traj = run_descent(problem, A0, "dca", 15)
    assert traj.monotone().all()
    assert traj.loss[-1, 0] < 0.5 * traj.loss[0, 0]


def test_dca_needs_smoothing():
    problem, A0 = seed_batch([0], m=2, mu=0.0)
    with pytest.raises(TripletlabError, match="mu > 0"):
        dca_step(problem, A0)
