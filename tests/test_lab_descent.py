"""The lab's step rules and descent driver: the seed's η̂ claims, the safeguard, line searches,
the closed-form rate, instances, determinism."""

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from tripletlab.lab.descent import run_descent
from tripletlab.lab.experiments import descent_experiment, sweep_experiment
from tripletlab.lab.instances import (
    digits_instance,
    gaussian_instance,
    labelled_triplets,
    seed_batch,
    seed_draw,
    seed_instance,
)
from tripletlab.lab.step_rules import (
    StepSettings,
    eta_hat,
    eta_hat_iterations,
    exact_general,
    exact_single,
)


def test_seed_draw_is_the_legacy_global_generator_protocol():
    # the seed's exact calls, on the legacy global generator (hence the noqa)
    state = np.random.get_state()  # noqa: NPY002
    try:
        np.random.seed(0)  # noqa: NPY002
        x_a, x_p, x_n = np.random.rand(3, 2)  # noqa: NPY002
        w0 = np.random.rand(2)  # noqa: NPY002
    finally:
        np.random.set_state(state)  # noqa: NPY002
    points, A0 = seed_draw(0, m=2)
    np.testing.assert_array_equal(points, np.stack([x_a, x_p, x_n]))
    np.testing.assert_array_equal(A0[0], w0)
    problem, A = seed_instance(0)
    np.testing.assert_array_equal(problem.u[0, 0], x_a - x_p)
    np.testing.assert_array_equal(problem.v[0, 0], x_a - x_n)
    assert problem.loss(A)[0] == pytest.approx(0.6945808, abs=1e-7)  # f(w⁰) of figure 2


def test_eta_hat_step_is_I_minus_B_over_lambda_max_and_norm_grows():
    problem, A0 = seed_batch(range(50), m=3)
    traj = run_descent(problem, A0, "eta_hat", 3)
    P = np.eye(3) - problem.B / problem.lam_max[:, None, None]
    np.testing.assert_allclose(traj.params[1], np.einsum("sdm,smk->sdk", A0, P), rtol=1e-10)
    vecs = np.linalg.eigh(problem.B)[1]
    coords = np.einsum("tsdm,smk->tsk", traj.params, vecs)  # components along B's eigenvectors
    growth = 1 - problem.lam_min / problem.lam_max
    assert np.all(growth > 1)
    finite = np.isfinite(traj.norm[3])  # a few overflow to NaN within 3 steps already
    assert finite.sum() > 40
    ratio = coords[2:, finite, 0] / coords[1:-1, finite, 0]
    np.testing.assert_allclose(ratio, [growth[finite]] * 2, rtol=1e-8)
    gone = np.abs(coords[1:, finite, -1]) < 1e-12 * traj.norm[1:, finite]
    assert gone.all()  # the λmax part is gone after one step
    # in m = 2 (no null space) ‖w‖ then grows by exactly that factor each step, without bound
    problem2, A2 = seed_batch(range(50), m=2)
    traj2 = run_descent(problem2, A2, "eta_hat", 3)
    growth2 = 1 - problem2.lam_min / problem2.lam_max
    ok = np.isfinite(traj2.norm[3])
    assert ok.sum() > 40
    np.testing.assert_allclose((traj2.norm[3] / traj2.norm[2])[ok], growth2[ok], rtol=1e-8)


def test_eta_hat_descends_but_overflows_and_the_safeguard_does_not():
    problem, A0 = seed_batch(range(200), m=2)
    plain = run_descent(problem, A0, "eta_hat", 60)
    safe = run_descent(problem, A0, "eta_hat_safe", 60)
    assert plain.monotone().all() and safe.monotone().all()  # b_η̂ ≤ 0: descent holds
    assert (plain.first_nonfinite() >= 0).sum() > 100  # q underflows → η̂ = ∞ → NaN
    assert np.isfinite(safe.loss).all() and np.isfinite(safe.norm).all()
    np.testing.assert_array_equal(plain.iterations_to(1e-6), safe.iterations_to(1e-6))
    done = safe.loss[40] <= 1e-12
    assert done.sum() > 100
    growth = safe.norm[-1][done] / safe.norm[40][done]
    assert np.all(growth < 1.01)  # w nearly stops (< 1% in 20 steps) once f is tiny
    eta = eta_hat(problem, safe.params[-1], floor=1e-8)
    assert np.all(eta <= 1 / (2e-8 * problem.lam_max) * (1 + 1e-12))


def test_closed_form_eta_hat_iterations_match_the_runs():
    for m, alpha, mu in [(2, 0.0, 1.0), (5, 0.1, 0.1)]:
        problem, A0 = seed_batch(range(300), m=m, alpha=alpha, mu=mu)
        measured = run_descent(problem, A0, "eta_hat_safe", 80).iterations_to(1e-6)
        predicted = eta_hat_iterations(problem, A0, 1e-6)
        np.testing.assert_array_equal(measured, np.where(predicted > 80, -1, predicted))


def test_exact_line_search_closed_form_matches_scipy_and_exceeds_eta_hat():
    problem, A0 = seed_batch(range(100), m=3)
    G = problem.gradient(A0)
    eta, unbounded = exact_single(problem, A0, G, StepSettings())
    bounded = np.flatnonzero(~unbounded)
    assert len(bounded) > 5 and unbounded.sum() > 5
    for s in bounded[:10]:

        def ray(e, s=s):
            return problem.loss(A0 - e * G)[s]

        ref = minimize_scalar(
            ray, bounds=(0, 10 * eta[s] + 1), method="bounded", options={"xatol": 1e-10}
        )
        assert ray(eta[s]) <= ref.fun + 1e-12
    # the seed writes η* = wᵀB²w/(2q wᵀB³w) ≤ 1/(2qλmax); the inequality goes the other way
    eh = eta_hat(problem, A0)
    assert np.all(eta[bounded] >= eh[bounded] * (1 - 1e-12))
    assert np.any(eta[bounded] > 1.5 * eh[bounded])
    along = problem.loss(A0 - 1e6 * G)[unbounded]
    assert np.all(along < problem.loss(A0)[unbounded])  # f keeps falling along those rays


def test_exact_general_finds_the_minimum_for_many_triplets():
    problem, A0 = gaussian_instance(0, n=40, m=3, d=2)
    G = problem.gradient(A0)
    eta, _ = exact_general(problem, A0, G, StepSettings(max_step=1e3))
    grid = np.linspace(0, 2 * eta[0] + 1e-3, 2001)
    best = min(problem.loss(A0 - e * G)[0] for e in grid)
    assert problem.loss(A0 - eta[0] * G)[0] <= best + 1e-12


@pytest.mark.parametrize("rule", ["armijo", "eta_hat_safe", "mf_corrected", "exact"])
def test_safe_rules_are_monotone(rule):
    problem, A0 = seed_batch(range(200), m=4, alpha=0.1, mu=0.5)
    assert run_descent(problem, A0, rule, 30).monotone().all()


def test_seed_mg_rule_can_increase_f():
    problem, A0 = seed_instance(0)
    traj = run_descent(problem, A0, "mg", 3)
    assert traj.loss[1, 0] > traj.loss[0, 0]  # 0.695 → 0.830: M_g is not a bound near w⁰


def test_multi_triplet_rules_and_determinism():
    problem, A0 = gaussian_instance(3, n=60, m=4, d=2)
    for rule in ("constant", "inv_sqrt", "armijo", "nesterov", "sgd"):
        a = run_descent(problem, A0, rule, 15, StepSettings(lr=0.05), batch_size=8, seed=1)
        b = run_descent(problem, A0, rule, 15, StepSettings(lr=0.05), batch_size=8, seed=1)
        np.testing.assert_array_equal(a.loss, b.loss)
        assert np.isfinite(a.loss).all()
    armijo = run_descent(problem, A0, "armijo", 15)
    assert armijo.loss[-1, 0] < armijo.loss[0, 0]
    sgd2 = run_descent(problem, A0, "sgd", 15, StepSettings(lr=0.05), batch_size=8, seed=2)
    assert not np.array_equal(sgd2.loss, a.loss)
    with pytest.raises(ValueError, match="n = 1"):
        run_descent(problem, A0, "eta_hat", 2)
    with pytest.raises(ValueError, match="rule must be one of"):
        run_descent(problem, A0, "adam", 2)


def test_labelled_instances():
    rng = np.random.RandomState(0)
    x = rng.rand(12, 3)
    labels = np.repeat([0, 1, 2], 4)
    u, v = labelled_triplets(x, labels, 30, np.random.RandomState(1))
    diffs = x[:, None, :] - x[None, :, :]
    for k in range(30):  # each u is a same-class difference, each v an other-class one
        i, j = np.argwhere(np.all(np.isclose(diffs, u[k]), axis=-1))[0]
        assert labels[i] == labels[j] and i != j
        i, j = np.argwhere(np.all(np.isclose(diffs, v[k]), axis=-1))[0]
        assert labels[i] != labels[j]
    problem, A0 = digits_instance(0, n=50, d=2)
    assert problem.u.shape == (1, 50, 64) and A0.shape == (1, 2, 64)
    with pytest.raises(ValueError, match="classes"):
        labelled_triplets(x, np.zeros(12), 3, rng)


def test_descent_experiment_reports_the_figure2_numbers():
    result = descent_experiment(seed=0, rules=("mg", "mf", "eta_hat"), iterations=20)
    s = result["summary"]
    assert s["f0"] == pytest.approx(0.6945808, abs=1e-7)
    rules = s["rules"]
    assert rules["eta_hat"]["iterations_to_tol"] == 8
    assert not rules["mg"]["monotone"] and rules["mf"]["monotone"] and rules["eta_hat"]["monotone"]
    assert rules["eta_hat"]["grad_sq_peak_iteration"] > 0  # ‖∇f‖² rises before it falls
    assert rules["mf"]["grad_sq_peak_iteration"] > 0
    assert rules["mg"]["bounds"]["M_g"]["violations"] >= 1


def test_small_sweep_counts():
    result = sweep_experiment(
        seeds=20, dims=(2, 4), rules=("eta_hat", "eta_hat_safe", "armijo"), iterations=40
    )
    rows = {(r["m"], r["rule"]): r for r in result["rows"]}
    assert len(rows) == 6
    for m in (2, 4):
        assert rows[m, "eta_hat_safe"]["nonfinite"] == 0
        assert rows[m, "eta_hat_safe"]["closed_form_agreement"] == 1.0
        assert rows[m, "eta_hat"]["reached"] == rows[m, "eta_hat_safe"]["reached"]
        assert rows[m, "armijo"]["non_monotone"] == 0
    assert result["instances"][2]["indefinite"] == 20


@pytest.mark.slow
def test_full_sweep_thousand_seeds():
    result = sweep_experiment(
        seeds=1000, dims=(2, 5, 10, 50), iterations=100, settings=StepSettings(lr=1.0)
    )
    rows = {(r["m"], r["rule"]): r for r in result["rows"]}
    for m in (2, 5, 10, 50):
        assert rows[m, "eta_hat_safe"]["closed_form_agreement"] == 1.0
        assert rows[m, "eta_hat_safe"]["nonfinite"] == 0
        assert rows[m, "mf_corrected"]["M_f_corrected_violated_instances"] == 0
