"""The contrastive loss: exact derivatives (torch autograd, float64), DC form, the global
smoothness constant on many random points, the same step rules, the command."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from tripletlab.cli import main
from tripletlab.errors import TripletlabError
from tripletlab.lab.contrastive import SATURATION_CONSTANT, ContrastiveProblem
from tripletlab.lab.descent import run_descent
from tripletlab.lab.instances import seed_batch


def random_problem(seed, S=4, n_pos=3, n_neg=5, m=3, d=2, eps=1.0, mu=0.1):
    rng = np.random.RandomState(seed)
    problem = ContrastiveProblem(rng.randn(S, n_pos, m), rng.randn(S, n_neg, m), eps, mu)
    return problem, rng.randn(S, d, m)


def torch_loss(A, pos, neg, eps, mu):
    a = ((pos @ A.T) ** 2).sum(-1)
    b = ((neg @ A.T) ** 2).sum(-1)
    return (a.sum() + (mu * torch.nn.functional.softplus((eps - b) / mu)).sum()) / (
        len(pos) + len(neg)
    )


@pytest.mark.parametrize("eps,mu", [(1.0, 0.1), (0.5, 1.0)])
def test_gradient_and_hessians_match_autograd(eps, mu):
    problem, A = random_problem(0, eps=eps, mu=mu)
    grad, hess = problem.gradient(A), problem.hessian(A)
    g_hess = problem.g_hessian(A)
    for s in range(problem.batch):
        pos, neg = torch.tensor(problem.pos[s]), torch.tensor(problem.neg[s])
        shape = A[s].shape

        def fn(x, pos=pos, neg=neg, shape=shape):
            return torch_loss(x.reshape(shape), pos, neg, eps, mu)

        x = torch.tensor(A[s].ravel(), requires_grad=True)
        (ref_grad,) = torch.autograd.grad(fn(x), x)
        ref_hess = torch.autograd.functional.hessian(fn, x.detach())
        np.testing.assert_allclose(grad[s].ravel(), ref_grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(hess[s], ref_hess.numpy(), rtol=1e-9, atol=1e-11)
        # ∇²g = ∇²f + ∇²h with ∇²h = 2/N I⊗Σ qqᵀ, and g is convex
        qq = 2 * np.kron(np.eye(shape[0]), problem.neg[s].T @ problem.neg[s]) / problem.n
        np.testing.assert_allclose(g_hess[s], hess[s] + qq, atol=1e-10)
        assert np.linalg.eigvalsh(g_hess[s])[0] > -1e-10
    g, h = problem.dc_values(A)
    np.testing.assert_allclose(g - h, problem.loss(A), rtol=1e-12)


def test_saturation_constant():
    from scipy.optimize import brentq
    from scipy.special import expit

    t = brentq(lambda t: t * np.tanh(t / 2) - 1, 0.5, 3.0)  # where t·σ(t)σ(−t) peaks
    assert pytest.approx(4 * t * expit(t) * expit(-t), abs=1e-9) == SATURATION_CONSTANT
    assert round(SATURATION_CONSTANT, 4) == 0.8955


@pytest.mark.parametrize("eps,mu", [(1.0, 0.1), (0.2, 1.0), (3.0, 0.05)])
def test_global_smoothness_holds_everywhere_sampled(eps, mu):
    problem, _ = random_problem(1, S=50, eps=eps, mu=mu)
    L = problem.global_smoothness()
    rng = np.random.RandomState(2)
    worst = 0.0
    for scale in (0.01, 0.3, 1.0, 3.0, 30.0, 1e3):
        for _ in range(4):
            A = rng.randn(50, 2, 3) * scale
            eig = np.linalg.eigvalsh(problem.hessian(A))
            worst = max(worst, (np.maximum(-eig[:, 0], eig[:, -1]) / L).max())
    assert worst <= 1.0  # unlike the triplet loss, one constant serves every A
    assert worst > 0.05  # and it is not vacuous


def test_same_rules_run_and_descend():
    problem, A0 = random_problem(3, S=6, n_pos=6, n_neg=8)
    for rule in ("global_l", "armijo", "dca", "exact"):
        traj = run_descent(problem, A0, rule, 15)
        assert traj.monotone().all() and np.isfinite(traj.loss).all(), rule
    gd = run_descent(problem, A0, "global_l", 200)
    # the standard 1/L guarantee: min_t ‖∇f_t‖² ≤ 2L(f₀ − f_T)/T
    L = problem.global_smoothness()
    assert (gd.grad_sq[:200].min(0) <= 2 * L * (gd.loss[0] - gd.loss[-1]) / 200).all()


def test_global_l_rule_refuses_the_triplet_loss():
    problem, A0 = seed_batch([0], m=2)
    with pytest.raises(TripletlabError, match="no global smoothness"):
        run_descent(problem, A0, "global_l", 1)


def test_bad_parameters():
    with pytest.raises(TripletlabError, match="eps and mu"):
        ContrastiveProblem(np.ones((1, 1, 2)), np.ones((1, 1, 2)), eps=1.0, mu=0.0)


def test_contrastive_command(tmp_path):
    out = tmp_path / "c"
    args = [
        "lab",
        "contrastive",
        "--n",
        "20",
        "--m",
        "3",
        "--iterations",
        "5",
        "--rules",
        "global_l,armijo,dca",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "contrastive.json").read_text())
    assert summary["n"] == 40 and summary["max_local_smoothness"] <= summary["global_smoothness"]
    assert (out / "contrastive.png").stat().st_size > 0
    assert "| Armijo |" in (out / "summary.md").read_text()
