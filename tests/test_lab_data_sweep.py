"""The sweep beyond n = d = 1: labelled instances, relative targets, SGD at equal work, bias."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tripletlab.cli import main
from tripletlab.errors import TripletlabError
from tripletlab.lab.data_sweep import data_sweep, labelled_batch, with_bias
from tripletlab.lab.descent import run_descent


def test_labelled_batch_stacks_the_single_instances():
    problem, A0 = labelled_batch("gaussian", [0, 1, 2], n=10, d=2, m=3, alpha=0.1, mu=0.1)
    assert problem.u.shape == (3, 10, 3) and A0.shape == (3, 2, 3)
    one, A1 = labelled_batch("gaussian", [1], n=10, d=2, m=3, alpha=0.1, mu=0.1)
    np.testing.assert_array_equal(problem.u[1], one.u[0])
    np.testing.assert_array_equal(A0[1], A1[0])


def test_bias_cancels_along_whole_trajectories():
    problem, A0 = labelled_batch("gaussian", [0, 1], n=12, d=2, m=3, alpha=0.1, mu=0.1)
    biased, B0 = with_bias(problem, A0, seed=0)
    for rule in ("armijo", "dca"):
        plain = run_descent(problem, A0, rule, 8)
        with_b = run_descent(biased, B0, rule, 8)
        np.testing.assert_allclose(with_b.loss, plain.loss, rtol=1e-10, atol=1e-14)
        np.testing.assert_array_equal(
            with_b.params[:, :, :, -1], with_b.params[:1, :, :, -1].repeat(9, 0)
        )


def test_data_sweep_rows_and_equal_work_for_sgd():
    result = data_sweep(
        seeds=3,
        settings=((12, 1), (12, 2)),
        m=3,
        rules=("armijo", "dca", "sgd"),
        iterations=10,
        batch_size=4,
        bias=True,
    )
    rows = result["rows"]
    assert [(r["n"], r["d"], r["rule"]) for r in rows][:3] == [
        (12, 1, "armijo"),
        (12, 1, "dca"),
        (12, 1, "sgd"),
    ]
    for r in rows:
        assert 0 <= r["reached"] <= 1 and r["max_bias_effect"] < 1e-12
        assert r["nonfinite"] == 0
    assert all(r["non_monotone"] == 0 for r in rows if r["rule"] in ("armijo", "dca"))
    # the best rule defines f_ref, so at least one rule reaches the target on every instance
    for n, d in ((12, 1), (12, 2)):
        assert max(r["reached"] for r in rows if (r["n"], r["d"]) == (n, d)) > 0


def test_data_sweep_rejects_single_triplet_rules():
    with pytest.raises(TripletlabError, match="single triplet"):
        data_sweep(seeds=1, settings=((5, 1),), rules=("eta_hat",), iterations=1)


def test_data_sweep_command(tmp_path):
    out = tmp_path / "ds"
    args = [
        "lab",
        "data-sweep",
        "--seeds",
        "2",
        "--settings",
        "10x1",
        "--m",
        "3",
        "--rules",
        "armijo,sgd",
        "--iterations",
        "5",
        "--batch-size",
        "5",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "data_sweep.json").read_text())
    assert len(data["rows"]) == 2 and data["config"]["settings"] == [[10, 1]]
    assert "| 10 | 1 | Armijo |" in (out / "summary.md").read_text()
    bad = CliRunner().invoke(main, [*args[:4], "--settings", "ten", "--out", str(out)])
    assert bad.exit_code == 2
