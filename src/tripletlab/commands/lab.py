"""``tripletlab lab …``: the optimisation lab's commands (surface, descent, sweep, data-sweep,
contrastive, claims). They only parse arguments and call :mod:`tripletlab.lab`; see
docs/lab.md for what each regenerates.
"""

from __future__ import annotations

from typing import Any

import click


def _float_list(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _str_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


@click.group("lab")
def lab_group() -> None:
    """The optimisation lab: gradient descent on the triplet loss of a linear embedding."""


@lab_group.command("surface")
@click.option("--seed", default=1, show_default=True, help="Seed of the triplet draw.")
@click.option("--alpha", "alphas", default="0,0.1", show_default=True, help="Margins (rows).")
@click.option(
    "--mu",
    "mus",
    default="0,0.1,1",
    show_default=True,
    help="Smoothings (columns); 0 is the hinge.",
)
@click.option("--grid", default=100, show_default=True, help="Grid points per axis.")
@click.option("--extent", default=2.0, show_default=True, help="w ranges over [-extent, extent]².")
@click.option("--out", default="lab-out/surface", show_default=True, help="Output folder.")
def lab_surface_command(
    seed: int, alphas: str, mus: str, grid: int, extent: float, out: str
) -> None:
    """Figure 1: loss surfaces of one random 2-d triplet (PNG, CSV, JSON, summary.md)."""
    from tripletlab.lab.experiments import surface_experiment
    from tripletlab.lab.outputs import write_surface

    result = surface_experiment(seed, _float_list(alphas), _float_list(mus), grid, extent)
    for path in write_surface(result, out):
        click.echo(f"wrote {path}")


@lab_group.command("descent")
@click.option("--seed", default=0, show_default=True, help="Seed of the instance (and SGD).")
@click.option(
    "--data",
    default="seed",
    show_default=True,
    type=click.Choice(["seed", "gaussian", "digits"]),
    help="seed: the seed's one-triplet draw; gaussian / digits: n labelled triplets.",
)
@click.option("--m", default=2, show_default=True, help="Input dimension (seed, gaussian).")
@click.option("--d", default=1, show_default=True, help="Embedding dimension (rows of A).")
@click.option("--n", default=1, show_default=True, help="Number of triplets.")
@click.option("--alpha", default=0.0, show_default=True, help="Margin α.")
@click.option("--mu", default=1.0, show_default=True, help="Smoothing μ (0: hinge).")
@click.option(
    "--rules",
    default="mg,mf,eta_hat",
    show_default=True,
    help="Comma-separated: mg, mf, mf_corrected, eta_hat, eta_hat_safe, constant, "
    "inv_sqrt, armijo, exact, nesterov, sgd, dca (convex–concave procedure, needs mu > 0).",
)
@click.option("--iterations", default=20, show_default=True, help="Iterations per rule.")
@click.option(
    "--lr", default=0.1, show_default=True, help="Step of constant/inv_sqrt/nesterov/sgd."
)
@click.option("--batch-size", default=32, show_default=True, help="SGD mini-batch (triplets).")
@click.option("--floor", default=1e-8, show_default=True, help="Safeguarded η̂: floor on q.")
@click.option("--tol", default=1e-6, show_default=True, help="Target f ≤ tol.")
@click.option("--horizon", type=int, help="Iteration at which f is quoted [default: all].")
@click.option("--out", default="lab-out/descent", show_default=True, help="Output folder.")
def lab_descent_command(rules: str, lr: float, floor: float, out: str, **kwargs: Any) -> None:
    """Figure 2 and beyond: run step rules from one w⁰, record every curve and the true local
    smoothness against the seed's bounds (PNG, CSV, JSON, summary.md)."""
    from tripletlab.lab.experiments import descent_experiment
    from tripletlab.lab.outputs import write_descent
    from tripletlab.lab.step_rules import StepSettings

    settings = StepSettings(lr=lr, floor=floor)
    result = descent_experiment(rules=_str_list(rules), settings=settings, **kwargs)
    for path in write_descent(result, out):
        click.echo(f"wrote {path}")


@lab_group.command("sweep")
@click.option("--seeds", default=1000, show_default=True, help="Number of seeds (instances).")
@click.option("--first-seed", default=0, show_default=True, help="First seed.")
@click.option("--dims", default="2,5,10,50", show_default=True, help="Dimensions m.")
@click.option("--alpha", default=0.0, show_default=True, help="Margin α.")
@click.option("--mu", default=1.0, show_default=True, help="Smoothing μ (0: hinge).")
@click.option(
    "--rules",
    default="mg,mf,mf_corrected,eta_hat,eta_hat_safe,constant,inv_sqrt,armijo,exact,nesterov,dca",
    show_default=True,
    help="Comma-separated step rules (dca: the convex–concave procedure).",
)
@click.option("--iterations", default=100, show_default=True, help="Iteration budget T.")
@click.option("--lr", default=1.0, show_default=True, help="Step of constant/inv_sqrt/nesterov.")
@click.option("--tol", default=1e-6, show_default=True, help="Target f ≤ tol.")
@click.option("--out", default="lab-out/sweep", show_default=True, help="Output folder.")
def lab_sweep_command(
    seeds: int,
    first_seed: int,
    dims: str,
    alpha: float,
    mu: float,
    rules: str,
    iterations: int,
    lr: float,
    tol: float,
    out: str,
) -> None:
    """Many random instances: per rule and dimension, the fraction reaching f ≤ tol, iterations,
    divergences and bound violations (PNG, CSV, JSON, summary.md)."""
    from tripletlab.lab.experiments import sweep_experiment
    from tripletlab.lab.outputs import write_sweep
    from tripletlab.lab.step_rules import StepSettings

    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1; got {seeds}")
    result = sweep_experiment(
        seeds,
        _int_list(dims),
        alpha,
        mu,
        _str_list(rules),
        iterations,
        tol,
        StepSettings(lr=lr),
        first_seed,
    )
    for path in write_sweep(result, out):
        click.echo(f"wrote {path}")


def _settings_list(text: str) -> list[tuple[int, int]]:
    """'30x1,300x2' → [(30, 1), (300, 2)]: (triplets n, output rows d)."""
    try:
        return [tuple(int(k) for k in x.split("x")) for x in _str_list(text)]  # type: ignore[misc]
    except ValueError as err:
        raise click.BadParameter(f"expected NxD pairs like 30x1,300x2; got {text!r}") from err


@lab_group.command("data-sweep")
@click.option(
    "--data", default="gaussian", show_default=True, type=click.Choice(["gaussian", "digits"])
)
@click.option("--seeds", default=20, show_default=True, help="Instances per setting.")
@click.option("--first-seed", default=0, show_default=True, help="First seed.")
@click.option(
    "--settings",
    "settings_text",
    default="30x1,30x2,300x2",
    show_default=True,
    help="Comma-separated NxD: n triplets, d output rows.",
)
@click.option("--m", default=5, show_default=True, help="Input dimension (gaussian).")
@click.option("--alpha", default=0.1, show_default=True, help="Margin α.")
@click.option("--mu", default=0.1, show_default=True, help="Smoothing μ.")
@click.option(
    "--rules",
    default="constant,armijo,exact,nesterov,dca,sgd",
    show_default=True,
    help="Comma-separated rules that work for n > 1.",
)
@click.option("--iterations", default=100, show_default=True, help="Budget in epochs.")
@click.option("--lr", default=0.05, show_default=True, help="Step of constant/nesterov/sgd.")
@click.option("--batch-size", default=32, show_default=True, help="SGD mini-batch (triplets).")
@click.option("--gap", default=1e-3, show_default=True, help="Relative target gap.")
@click.option("--bias/--no-bias", default=False, show_default=True, help="Also run φ = Ax + b.")
@click.option("--out", default="lab-out/data-sweep", show_default=True, help="Output folder.")
def lab_data_sweep_command(
    settings_text: str, rules: str, lr: float, out: str, **kwargs: Any
) -> None:
    """Beyond n = d = 1: every rule on many labelled instances per (n, d), with α, μ, SGD at equal
    per-triplet work, and optionally a bias term (CSV, JSON, summary.md)."""
    from tripletlab.lab.data_sweep import data_sweep
    from tripletlab.lab.outputs import write_data_sweep
    from tripletlab.lab.step_rules import StepSettings

    result = data_sweep(
        settings=_settings_list(settings_text),
        rules=_str_list(rules),
        step=StepSettings(lr=lr),
        **kwargs,
    )
    for path in write_data_sweep(result, out):
        click.echo(f"wrote {path}")


@lab_group.command("contrastive")
@click.option(
    "--data", default="gaussian", show_default=True, type=click.Choice(["gaussian", "digits"])
)
@click.option("--seed", default=0, show_default=True, help="Seed of the instance (and SGD).")
@click.option("--n", default=200, show_default=True, help="Triplets; each gives 2 pairs.")
@click.option("--m", default=5, show_default=True, help="Input dimension (gaussian).")
@click.option("--d", default=2, show_default=True, help="Embedding dimension.")
@click.option("--eps", default=1.0, show_default=True, help="Negative margin ε.")
@click.option("--mu", default=0.1, show_default=True, help="Smoothing μ (> 0).")
@click.option(
    "--rules",
    default="global_l,constant,armijo,exact,nesterov,dca,sgd",
    show_default=True,
    help="Comma-separated rules (global_l: η = 1/L, L the global smoothness constant).",
)
@click.option("--iterations", default=100, show_default=True, help="Iterations per rule.")
@click.option("--lr", default=0.05, show_default=True, help="Step of constant/nesterov/sgd.")
@click.option("--batch-size", default=32, show_default=True, help="SGD mini-batch (pairs).")
@click.option("--out", default="lab-out/contrastive", show_default=True, help="Output folder.")
def lab_contrastive_command(rules: str, lr: float, out: str, **kwargs: Any) -> None:
    """The contrastive loss through the same analysis: DC form, global smoothness constant, the
    same step rules, against the triplet loss on the same triplets (PNG, CSV, JSON, summary.md)."""
    from tripletlab.lab.contrastive_experiment import contrastive_experiment
    from tripletlab.lab.outputs import write_contrastive
    from tripletlab.lab.step_rules import StepSettings

    result = contrastive_experiment(rules=_str_list(rules), settings=StepSettings(lr=lr), **kwargs)
    for path in write_contrastive(result, out):
        click.echo(f"wrote {path}")


@lab_group.command("claims")
@click.option("--seeds", default=1000, show_default=True, help="Number of seed-protocol draws.")
@click.option("--first-seed", default=0, show_default=True, help="First seed.")
@click.option(
    "--dims",
    default="2,20",
    show_default=True,
    help="Dimensions m: the first for every check, all for the M_f-vs-M_g counts.",
)
@click.option("--steps", default=8, show_default=True, help="Steps of the §2.8/§2.9 runs.")
@click.option("--out", default="lab-out/claims", show_default=True, help="Output folder.")
def lab_claims_command(seeds: int, first_seed: int, dims: str, steps: int, out: str) -> None:
    """The seed's sections 2.4–2.10 checked on many instances: verdicts, counts and
    counterexamples (claims.json, summary.md)."""
    from tripletlab.lab.claims import claims_report
    from tripletlab.lab.outputs import write_claims

    if seeds < 1 or steps < 1:
        raise click.BadParameter("--seeds and --steps must be >= 1")
    report = claims_report(seeds, _int_list(dims), steps, first_seed)
    for path in write_claims(report, out):
        click.echo(f"wrote {path}")


# --- end of lab section ---------------------------------------------------------------------


# --- recognition: index / search / verify (tripletlab.pipeline.recognition) ----------------
