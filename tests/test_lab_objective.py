"""The lab's objective: exact gradients and Hessians against torch autograd (float64), the
softplus identity, the infimum, numerical stability, and the seed's algebra checked."""

import itertools

import numpy as np
import pytest
import torch

from tripletlab.lab import objective
from tripletlab.lab.instances import embed_with_bias
from tripletlab.lab.problem import TripletProblem
from tripletlab.lab.step_rules import mf_bound, mf_corrected_bound, mg_bound, mg_corrected_bound


def torch_loss(A, u, v, alpha, mu):
    """Reference f_μ, g_μ, h for one instance: A (d, m), u, v (n, m), written independently."""
    a = ((u @ A.T) ** 2).sum(-1)
    b = ((v @ A.T) ** 2).sum(-1)
    g = mu * torch.logsumexp(torch.stack([(a + alpha) / mu, b / mu]), dim=0)
    return (g - b).mean(), g.mean(), b.mean()


def random_case(seed, S=3, n=4, d=2, m=3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(S, d, m)), rng.normal(size=(S, n, m)), rng.normal(size=(S, n, m))


@pytest.mark.parametrize("shape", [(2, 1, 1, 2), (3, 4, 2, 3), (2, 5, 3, 4)])
@pytest.mark.parametrize("alpha, mu", [(0.0, 1.0), (0.3, 0.5), (1.0, 2.0)])
def test_gradient_and_hessian_match_autograd(shape, alpha, mu):
    S, n, d, m = shape
    A, u, v = random_case(S * 100 + n, S, n, d, m)
    grad = objective.gradient(A, u, v, alpha, mu)
    hess = objective.hessian(A, u, v, alpha, mu)
    grad_g, grad_h = objective.dc_gradients(A, u, v, alpha, mu)
    hess_g, hess_h = objective.dc_hessians(A, u, v, alpha, mu)
    loss = objective.smoothed_loss(A, u, v, alpha, mu)
    for s in range(S):
        ut, vt = torch.tensor(u[s]), torch.tensor(v[s])
        At = torch.tensor(A[s], requires_grad=True)
        for k, (mine_g, mine_h) in enumerate(
            [(grad[s], hess[s]), (grad_g[s], hess_g[s]), (grad_h[s], hess_h[s])]
        ):

            def fn(x, k=k, ut=ut, vt=vt):
                return torch_loss(x.reshape(d, m), ut, vt, alpha, mu)[k]

            ref_grad = torch.autograd.grad(fn(At), At)[0]
            ref_hess = torch.autograd.functional.hessian(fn, At.detach().reshape(-1))
            np.testing.assert_allclose(mine_g, ref_grad.numpy(), rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(mine_h, ref_hess.numpy(), rtol=1e-9, atol=1e-11)
        assert loss[s] == pytest.approx(
            float(torch_loss(At.detach(), ut, vt, alpha, mu)[0]), rel=1e-12
        )


def test_hinge_is_mu_zero_and_smoothing_converges_to_it():
    A, u, v = random_case(1)
    hinge = objective.hinge_loss(A, u, v, 0.2)
    np.testing.assert_array_equal(objective.smoothed_loss(A, u, v, 0.2, 0.0), hinge)
    for mu in (1.0, 0.1, 0.01):
        gap = objective.smoothed_loss(A, u, v, 0.2, mu) - hinge
        assert np.all(gap >= -1e-15) and np.all(gap <= mu * np.log(2) + 1e-15)  # up to an ulp


def test_f_equals_g_minus_h():
    A, u, v = random_case(2)
    for alpha, mu in [(0.0, 1.0), (0.1, 0.1), (0.5, 0.0)]:
        g, h = objective.dc_parts(A, u, v, alpha, mu)
        np.testing.assert_allclose(g - h, objective.smoothed_loss(A, u, v, alpha, mu), atol=1e-12)


def test_softplus_identity_including_large_arguments():
    a = np.array([-800.0, -30.0, -1.0, 0.0, 2.5, 40.0, 800.0, 1e6])
    b = np.array([3.0, 700.0, -2.0, 0.0, 1.0, -900.0, 799.0, -1e6])
    lhs = objective.lse_minus_b(a, b)
    rhs = objective.softplus(a - b)
    assert np.all(np.isfinite(lhs)) and np.all(np.isfinite(rhs))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12, atol=1e-12)
    with np.errstate(over="ignore", invalid="ignore"):  # the textbook formula overflows here
        naive = np.log(np.exp(a) + np.exp(b)) - b
    assert not np.all(np.isfinite(naive))


def test_stable_for_large_arguments_where_naive_lse_overflows():
    u = np.array([[[3.0, 0.0]]])
    v = np.array([[[0.0, 1.0]]])
    A = np.array([[[40.0, 0.0]], [[0.0, 40.0]]])  # z = +14400 and −1600
    u2, v2 = np.repeat(u, 2, 0), np.repeat(v, 2, 0)
    mu = 0.1
    f = objective.smoothed_loss(A, u2, v2, 0.0, mu)
    assert np.all(np.isfinite(f))
    assert f[0] == pytest.approx(14400.0) and 0 <= f[1] < 1e-300
    for array in (objective.gradient(A, u2, v2, 0.0, mu), objective.hessian(A, u2, v2, 0.0, mu)):
        assert np.all(np.isfinite(array))
    g, h = objective.dc_parts(A, u2, v2, 0.0, mu)
    assert np.all(np.isfinite(g)) and np.all(np.isfinite(h))
    a, b = objective.squared_distances(A, u2, v2)
    with np.errstate(over="ignore", invalid="ignore"):
        naive = mu * np.log(np.exp(a / mu) + np.exp(b / mu)) - b
    assert not np.all(np.isfinite(naive))


def test_hessian_of_quadratic_is_2B_not_B():
    rng = np.random.default_rng(3)
    u, v = rng.normal(size=4), rng.normal(size=4)
    B = np.outer(u, u) - np.outer(v, v)
    Bt = torch.tensor(B)
    H = torch.autograd.functional.hessian(lambda w: w @ Bt @ w, torch.tensor(rng.normal(size=4)))
    np.testing.assert_allclose(H.numpy(), 2 * B, atol=1e-12)
    assert not np.allclose(H.numpy(), B)


def test_seed_hessian_of_g_is_wrong():
    """The seed's ∇²g = 4p(1−p)[(wᵀu)²uuᵀ + (wᵀv)²vvᵀ] − 8p(1−p)(wᵀu)(wᵀv)(uvᵀ + vuᵀ) (sec. 2.4)."""
    rng = np.random.default_rng(4)
    u, v, w = rng.normal(size=(3, 3))
    wu, wv = w @ u, w @ v
    p = 1 / (1 + np.exp(wv**2 - wu**2))
    seed = 4 * p * (1 - p) * (wu**2 * np.outer(u, u) + wv**2 * np.outer(v, v)) - 8 * p * (
        1 - p
    ) * wu * wv * (np.outer(u, v) + np.outer(v, u))
    true, _ = objective.dc_hessians(w[None, None], u[None, None], v[None, None], 0.0, 1.0)
    assert np.abs(true[0] - seed).max() > 0.1
    fixed = 2 * (p * np.outer(u, u) + (1 - p) * np.outer(v, v))
    Bw = np.outer(u, u) @ w - np.outer(v, v) @ w
    fixed += 4 * p * (1 - p) * np.outer(Bw, Bw)
    np.testing.assert_allclose(true[0], fixed, atol=1e-12)


def _single(u, v, alpha=0.0, mu=1.0):
    return TripletProblem(
        np.asarray(u, float)[None, None], np.asarray(v, float)[None, None], alpha, mu
    )


def test_infimum_log2_when_B_psd_attained_at_zero():
    rng = np.random.default_rng(5)
    u = rng.normal(size=3)
    for c in (0.0, 0.5, -1.0):  # v = c·u with |c| ≤ 1 is exactly when B ⪰ 0
        p = _single(u, c * u)
        assert p.lam_min[0] >= -1e-12
        assert p.infimum()[0] == pytest.approx(np.log(2))
        W = rng.normal(size=(2000, 1, 3)) * rng.exponential(size=(2000, 1, 1))
        f = objective.smoothed_loss(
            W, np.broadcast_to(p.u, (2000, 1, 3)), np.broadcast_to(p.v, (2000, 1, 3)), 0.0, 1.0
        )
        assert f.min() >= np.log(2) - 1e-12
        assert p.loss(np.zeros((1, 1, 3)))[0] == pytest.approx(np.log(2))
    p = _single(u, 0.5 * u, alpha=0.3, mu=0.2)
    assert p.infimum()[0] == pytest.approx(0.2 * np.log1p(np.exp(0.3 / 0.2)))


def test_infimum_zero_not_attained_when_B_indefinite():
    rng = np.random.default_rng(6)
    for _ in range(20):  # independent u, v in m ≥ 2 always give an indefinite B
        u, v = rng.normal(size=(2, 3))
        p = _single(u, v)
        assert p.lam_min[0] < 0 < p.lam_max[0]
        assert p.infimum()[0] == 0.0
    e_min = np.linalg.eigh(p.B[0])[1][:, 0]
    values = [p.loss(t * e_min[None, None])[0] for t in (1, 3, 10, 30)]
    assert all(x > y > 0 for x, y in itertools.pairwise(values))
    assert values[-1] < 1e-12
    # the seed's wording: linearly dependent u, v with |c| > 1 is NOT ⪰ 0
    assert _single(u, 2 * u).lam_min[0] < 0 and _single(u, 2 * u).infimum()[0] == 0.0


def test_spectral_norm_vs_lambda_max_counterexample():
    p = _single([1.0, 0.0], [0.0, 2.0])  # B = diag(1, −4)
    assert p.lam_max[0] == pytest.approx(1.0) and p.spectral_norm[0] == pytest.approx(4.0)
    w = np.array([[[0.0, 0.1]]])
    Bw = p.B[0] @ w[0, 0]
    assert np.outer(Bw, Bw).max() == pytest.approx(0.16)  # > ‖w‖²λmax² = 0.01
    true = np.abs(np.linalg.eigvalsh(p.hessian(w)[0])).max()
    assert true > mf_bound(p, w)[0]  # the seed's M_f is not a bound here
    assert true <= mf_corrected_bound(p, w)[0]


def test_corrected_bounds_hold_and_seed_mg_fails_near_zero():
    rng = np.random.default_rng(7)
    u, v = rng.normal(size=(2, 40, 1, 3))
    p = TripletProblem(u, v, 0.1, 0.5)
    for scale in (0.01, 0.3, 1.0, 5.0):
        A = rng.normal(size=(40, 1, 3)) * scale
        L_f = np.abs(np.linalg.eigvalsh(p.hessian(A))).max(-1)
        L_g = np.abs(np.linalg.eigvalsh(objective.dc_hessians(A, u, v, 0.1, 0.5)[0])).max(-1)
        assert np.all(mf_corrected_bound(p, A) >= L_f)
        assert np.all(mg_corrected_bound(p, A) >= L_g)
    tiny = rng.normal(size=(40, 1, 3)) * 1e-3
    L_g = np.abs(np.linalg.eigvalsh(objective.dc_hessians(tiny, u, v, 0.0, 1.0)[0])).max(-1)
    assert np.all(mg_bound(p, tiny) < L_g)  # M_g → 0 as w → 0, while ∇²g → 2(puuᵀ + (1−p)vvᵀ)


def test_bias_cancels_in_the_triplet_loss():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(1, 3, 4))  # anchor, positive, negative
    A = torch.tensor(rng.normal(size=(1, 2, 4)))
    bias = torch.tensor(rng.normal(size=(1, 2)), requires_grad=True)
    emb = torch.einsum("sdm,snm->snd", A, torch.tensor(x)) + bias[:, None, :]
    loss = torch.nn.functional.softplus(
        ((emb[:, 0] - emb[:, 1]) ** 2).sum(-1) - ((emb[:, 0] - emb[:, 2]) ** 2).sum(-1) + 0.1
    ).sum()
    (grad_b,) = torch.autograd.grad(loss, bias)
    assert torch.all(grad_b == 0)
    mine = embed_with_bias(A.numpy(), bias.detach().numpy(), x)
    no_bias = embed_with_bias(A.numpy(), np.zeros((1, 2)), x)
    np.testing.assert_allclose(mine[:, 0] - mine[:, 1], no_bias[:, 0] - no_bias[:, 1], atol=1e-12)
    u, v = x[:, :1] - x[:, 1:2], x[:, :1] - x[:, 2:3]
    ours = objective.smoothed_loss(A.numpy(), u, v, 0.1, 1.0)
    assert ours[0] == pytest.approx(float(loss.detach()), rel=1e-12)


def test_bad_arguments_are_named():
    A, u, v = random_case(9)
    with pytest.raises(ValueError, match="mu"):
        objective.smoothed_loss(A, u, v, 0.0, -1.0)
    with pytest.raises(ValueError, match="alpha"):
        TripletProblem(u, v, alpha=-0.1)
    with pytest.raises(ValueError, match="shape"):
        TripletProblem(u, v[:, :2])
    with pytest.raises(ValueError, match="n = 1"):
        _ = TripletProblem(u, v).B
