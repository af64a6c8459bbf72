"""`tripletlab lab surface|descent|sweep` on tiny settings: files written, deterministic, errors."""

import json

import pytest
from click.testing import CliRunner

from tripletlab.cli import main


def run(args):
    result = CliRunner().invoke(main, args)
    return result


def test_surface_writes_png_csv_json_summary(tmp_path):
    out = tmp_path / "s"
    result = run(["lab", "surface", "--grid", "12", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("figure1_surfaces.png", "surface.csv", "surface.json", "summary.md"):
        assert (out / name).stat().st_size > 0
    lines = (out / "surface.csv").read_text().splitlines()
    assert len(lines) == 1 + 12 * 12 and lines[0].startswith("w1,w2,alpha=0_hinge")
    summary = json.loads((out / "surface.json").read_text())
    assert summary["seed"] == 1 and len(summary["panels"]) == 6
    assert all(p["infimum"] == 0.0 for p in summary["panels"])  # seed 1's B is indefinite


def test_descent_is_deterministic_and_writes_every_curve(tmp_path):
    args = ["lab", "descent", "--rules", "mg,mf,eta_hat", "--iterations", "5"]
    a = run([*args, "--out", str(tmp_path / "a")])
    b = run([*args, "--out", str(tmp_path / "b")])
    assert a.exit_code == 0 and b.exit_code == 0, a.output
    csv_a = (tmp_path / "a" / "curves.csv").read_text()
    assert csv_a == (tmp_path / "b" / "curves.csv").read_text()
    assert len(csv_a.splitlines()) == 1 + 3 * 6
    assert csv_a.splitlines()[0].startswith("rule,t,f,norm,grad_sq,step,L_f,L_g,M_f")
    for name in ("descent.png", "smoothness.png", "summary.md"):
        assert (tmp_path / "a" / name).exists()
    summary = json.loads((tmp_path / "a" / "descent.json").read_text())
    assert summary["f0"] == pytest.approx(0.6945808, abs=1e-7)
    assert "f(w⁰) = 0.694581" in (tmp_path / "a" / "summary.md").read_text()


def test_descent_on_labelled_data_with_sgd(tmp_path):
    out = tmp_path / "g"
    result = run(
        [
            "lab",
            "descent",
            "--data",
            "gaussian",
            "--n",
            "30",
            "--m",
            "3",
            "--d",
            "2",
            "--alpha",
            "0.1",
            "--mu",
            "0.1",
            "--rules",
            "armijo,sgd,nesterov",
            "--iterations",
            "4",
            "--batch-size",
            "5",
            "--out",
            str(out),
        ]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "descent.json").read_text())
    assert (
        summary["n"] == 30
        and summary["d"] == 2
        and set(summary["rules"]) == {"armijo", "sgd", "nesterov"}
    )


def test_sweep_writes_table(tmp_path):
    out = tmp_path / "w"
    args = [
        "lab",
        "sweep",
        "--seeds",
        "6",
        "--dims",
        "2,3",
        "--iterations",
        "10",
        "--rules",
        "mf,eta_hat_safe,armijo",
    ]
    result = run([*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = (out / "sweep.csv").read_text()
    assert len(table.splitlines()) == 1 + 2 * 3
    assert "| m | rule | reached |" in (out / "summary.md").read_text()
    assert (out / "sweep.png").exists()
    again = run([*args, "--out", str(tmp_path / "w2")])
    assert again.exit_code == 0 and (tmp_path / "w2" / "sweep.csv").read_text() == table


@pytest.mark.parametrize(
    "args, needle",
    [
        (["lab", "descent", "--rules", "adam", "--iterations", "1"], "rule must be one of"),
        (["lab", "descent", "--n", "3", "--iterations", "1"], "n = 1"),
        (["lab", "descent", "--mu", "-1", "--iterations", "1"], "mu"),
        (["lab", "sweep", "--seeds", "0"], "--seeds"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, needle):
    result = run([*args, "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert needle in result.output and "Traceback" not in result.output
