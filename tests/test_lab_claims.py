"""The seed's sections 2.4–2.10: each corrected statement checked on many random instances
(seed protocol, deterministic seeds), each failure shown by a counterexample."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tripletlab.cli import main
from tripletlab.lab import claims_convergence as conv
from tripletlab.lab import claims_smoothness as smooth
from tripletlab.lab.descent import run_descent
from tripletlab.lab.instances import seed_batch

SEEDS = np.arange(300)


@pytest.fixture(scope="module", params=[2, 5])
def batch(request):
    return seed_batch(SEEDS, m=request.param)


def test_24_cross_term_inequality_fails_for_every_random_pair_and_the_correct_one_holds(batch):
    problem, _ = batch
    u, v = problem.u[:, 0], problem.v[:, 0]
    sup, seed_bound = smooth.cross_term_norms(u, v)
    assert (sup > seed_bound * (1 + 1e-9)).all()  # the seed's bound fails for all 300 pairs
    closed = np.abs((u * v).sum(-1)) + np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1)
    np.testing.assert_allclose(sup, closed, rtol=1e-10)
    assert (sup <= 2 * np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1) + 1e-12).all()
    # and random z never exceed the corrected bound
    z = np.random.RandomState(0).randn(len(u), u.shape[1])
    quad = np.abs(2 * (z * u).sum(-1) * (z * v).sum(-1))
    assert (quad <= closed * (z * z).sum(-1) * (1 + 1e-10)).all()


def test_24_counterexample_orthogonal_pair():
    sup, seed_bound = smooth.cross_term_norms(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))
    assert seed_bound[0] == 0.0 and sup[0] == pytest.approx(1.0)


@pytest.mark.parametrize("mu", [1.0, 0.1])
def test_25_no_global_smoothness_hessian_grows_like_norm_squared_on_the_null_cone(mu):
    problem, _ = seed_batch(SEEDS, m=3, mu=mu)
    w0 = smooth.null_cone_direction(problem)
    np.testing.assert_allclose(problem.loss(w0), mu * np.log(2), rtol=1e-9)  # wᵀBw = 0
    scales = np.array([10.0, 100.0, 1000.0])
    growth = smooth.hessian_growth_on_null_cone(problem, scales)
    lam = problem.eigenvalues
    limit = (lam[:, -1] - lam[:, 0]) / mu
    error = np.abs(growth / limit - 1)
    assert (error[-1] < 1e-5).all() and (error[-1] < error[0]).all()


def test_25_top_eigenvalue_itself_exceeds_seed_mf():
    cx = smooth.top_eigenvalue_counterexample()
    assert cx["M_f"] == pytest.approx(0.0202)
    assert cx["hessian_eigenvalues"][-1] == pytest.approx(0.6015, abs=1e-4)
    assert cx["hessian_eigenvalues"][-1] > 29 * cx["M_f"]


def test_25_mf_better_than_mg_counts_at_m2_and_m20():
    assert smooth.mf_vs_mg_at_start(1000, 2)["mf_below_mg"] == 415
    assert smooth.mf_vs_mg_at_start(1000, 20)["mf_below_mg"] == 1000


@pytest.mark.parametrize("alpha,mu", [(0.0, 1.0), (0.1, 0.1), (0.5, 2.0)])
def test_26_exact_change_identity_and_the_sign_of_c(alpha, mu):
    problem, _ = seed_batch(SEEDS, m=3, alpha=alpha, mu=mu)
    rng = np.random.RandomState(1)
    w = rng.randn(len(SEEDS), 1, 3)
    eta = rng.rand(len(SEEDS)) * 5
    actual = problem.loss(w - eta[:, None, None] * problem.gradient(w)) - problem.loss(w)
    predicted = conv.predicted_change(problem, w, eta)
    np.testing.assert_allclose(actual, predicted, atol=1e-10)
    # the seed's "select c < log(…)": every such c violates f(w⁺) ≤ f(w) + c
    assert (actual > predicted - 1e-3).all()
    # descent ⇔ b_η < 0
    b = conv.quadratic_change(problem, w, eta)
    visible = np.abs(actual) > 1e-12  # where the change is not lost to rounding
    assert visible.sum() > 250
    assert ((actual < 0) == (b < 0))[visible].all()


def test_28_iterate_bound_holds_is_tight_in_rate_and_the_exact_norm_formula(batch):
    problem, A0 = batch
    traj = run_descent(problem, A0, "eta_hat", 6)
    growth_seen = []
    for t in range(1, 7):
        exact = conv.eta_hat_closed_form(problem, A0, t)
        ok = np.isfinite(traj.norm[t]) & (traj.loss[t] > 1e-300)
        assert ok.sum() > 100
        np.testing.assert_allclose(exact["norm"][ok], traj.norm[t][ok], rtol=1e-9)
        np.testing.assert_allclose(exact["loss"][ok], traj.loss[t][ok], rtol=1e-8)
        assert (exact["seed_bound"] >= exact["norm"] * (1 - 1e-12)).all()  # the bound holds
        growth_seen.append(np.median(exact["norm"]))
    # ... but it bounds a divergence: ‖w_t‖ grows, and bound/‖w_t‖ tends to ‖w⁰‖/|c_min|
    assert growth_seen[-1] > 2 * growth_seen[0]
    late = conv.eta_hat_closed_form(problem, A0, 40)
    kappa = -problem.lam_min / problem.lam_max
    grown = np.isfinite(late["norm"]) & ((1 + kappa) ** 40 > 1e4)  # (1+κ)ᵗ dominates
    assert grown.sum() > 200
    ratio = late["seed_bound"][grown] / late["norm"][grown]
    np.testing.assert_allclose(ratio, late["rate_limit"][grown], rtol=1e-3)


def test_29_product_of_log_arguments_is_at_least_one_so_the_step_is_invalid():
    qs, Xs = np.linspace(0.01, 0.99, 99), np.linspace(0, 20, 101)
    product = conv.log_argument_product(qs[:, None], Xs[None, :])
    assert (product >= 1 - 1e-15).all()
    grid = conv.seed_log_gap_grid(np.linspace(0.1, 0.9, 9), np.linspace(0, 5, 11))
    assert grid.min() == pytest.approx(-3.627, abs=1e-3)
    # "= 1 iff exp(·) = 1": q e^X + 1 − q = 1 exactly when X = 0, never when e^X = 0
    assert conv.log_argument_product(0.3, 0.0) == pytest.approx(1.0)


def test_29_seed_valid_step_holds_claimed_fails_corrected_holds(batch):
    problem, A0 = batch
    rng = np.random.RandomState(2)
    for w in (A0, rng.randn(*A0.shape)):
        step = conv.section_29_step(problem, w)
        slack = 1e-12
        assert (step["decrease"] >= step["seed_valid"] - slack).all()
        assert (step["decrease"] >= step["corrected"] - slack).all()
        fails = step["decrease"] < step["seed_claimed"] - slack
        assert 0.2 * len(SEEDS) < fails.sum() < len(SEEDS)


def test_29_telescoped_corrected_bound_along_runs():
    problem, w = seed_batch(SEEDS, m=3)
    f0 = problem.loss(w)
    total = np.zeros(len(SEEDS))
    for _ in range(20):
        total += conv.section_29_step(problem, w)["corrected"]
        w = w - (1 / problem.lam_max)[:, None, None] * problem.gradient(w)
    assert (total <= f0 - problem.loss(w) + 1e-12).all()
    assert (total <= f0 / (1 - np.exp(-1)) + 1e-12).all()


def test_210_no_minimiser_for_indefinite_b(batch):
    problem, _ = batch
    lam, vecs = np.linalg.eigh(problem.B)
    assert ((lam[:, 0] < 0) & (lam[:, -1] > 0)).all()
    w = np.random.RandomState(3).randn(len(SEEDS), 1, problem.m)
    assert (problem.loss(w) > 0).all()  # f > inf f = 0 everywhere
    along = [problem.loss(vecs[:, None, :, 0] * t) for t in (1.0, 3.0, 10.0)]
    assert (along[0] > along[1]).all() and (along[1] > along[2]).all()  # → 0, never attained


def test_210_and_docs_f_next_is_about_f_to_the_power_one_plus_kappa_squared():
    problem, A0 = seed_batch([0], m=2)
    lam = problem.eigenvalues[0]
    power = (1 - lam[0] / lam[-1]) ** 2
    assert power == pytest.approx(2.68, abs=0.005)
    f = [conv.eta_hat_closed_form(problem, A0, t)["loss"][0] for t in range(1, 12)]
    ratios = np.log(f[1:]) / np.log(f[:-1])
    assert ratios[7] == pytest.approx(power, rel=1e-9)  # f₉ vs f₈ (f₈ = 3.4e-13)
    assert ratios[0] < 1.1  # the approximation holds only once f is small


def test_claims_command_writes_report(tmp_path):
    out = tmp_path / "c"
    result = CliRunner().invoke(
        main, ["lab", "claims", "--seeds", "40", "--dims", "2,20", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "claims.json").read_text())
    assert report["2.4_cross_term"]["fails"] == 40
    assert report["2.9_gradient_norm"]["grid_min_log_gap"] == pytest.approx(-3.627, abs=1e-3)
    assert [r["mf_below_mg"] for r in report["2.5_mf_vs_mg"]][1] == 40
    assert "§2.9" in (out / "summary.md").read_text()


def test_claims_command_rejects_zero_seeds(tmp_path):
    result = CliRunner().invoke(main, ["lab", "claims", "--seeds", "0", "--out", str(tmp_path)])
    assert result.exit_code == 2
