"""The ``tripletlab`` command line. It only parses arguments and calls the pipeline.

Commands: ``train``, ``evaluate``, ``embed`` (a run), ``index``, ``search``, ``verify``
(recognition with a trained run) and ``lab surface|descent|sweep`` (the optimisation lab).
Choices and defaults shown in ``--help`` come from :mod:`tripletlab.pipeline.registries` and
:class:`~tripletlab.pipeline.config.RunConfig`, so they cannot drift from what a run does.

Errors a user can cause (a :class:`~tripletlab.errors.TripletlabError`: a bad flag value,
config or dataset; an ``OSError``: a missing or unreadable file) are printed as one line,
``error: …``, and the process exits with status 2. Any other exception is a bug in
tripletlab and keeps its traceback.
"""

from __future__ import annotations

import json
import sys
from functools import reduce
from typing import Any

import click

from tripletlab.commands.config import config_command
from tripletlab.commands.train_options import extra_overrides, extra_train_options
from tripletlab.errors import TripletlabError
from tripletlab.pipeline import registries
from tripletlab.pipeline.config import RunConfig

#: What a user can cause: printed as one line with exit status 2.
USER_ERRORS: tuple[type[Exception], ...] = (TripletlabError, OSError)

#: Command groups whose library code still signals bad arguments with a bare ValueError or
#: TypeError (the optimisation lab, until it raises InvalidArgumentError): for these alone,
#: those are user errors too.
_LEGACY_ARGUMENT_ERRORS = {"lab": (ValueError, TypeError)}


class _Group(click.Group):
    """A click group that turns user errors into one line on stderr and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            legacy = _LEGACY_ARGUMENT_ERRORS.get(ctx.invoked_subcommand or "", ())
            if not isinstance(exc, USER_ERRORS + legacy):
                raise  # a bug: keep the traceback
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tripletlab")
def main() -> None:
    """Deep metric learning with the triplet loss: train, evaluate, embed, recognise, analyse."""


# --- sub-commands are registered below, one section per area -------------------------------


# --- train / evaluate / embed (the run pipeline: tripletlab.pipeline) -----------------------

_TRAIN_FLAGS = {  # CLI option name -> dotted config key
    "dataset": "data.dataset",
    "data_dir": "data.data_dir",
    "split": "data.split",
    "max_samples": "data.max_samples",
    "model": "model.name",
    "embedding_dim": "model.embedding_dim",
    "loss": "loss.name",
    "metric": "loss.metric",
    "margin": "loss.margin",
    "smoothing": "loss.smoothing",
    "optimizer": "optim.name",
    "lr": "optim.lr",
    "epochs": "train.epochs",
    "threads": "train.threads",
    "seed": "seed",
    "name": "name",
    "out": "out",
}

_DEFAULTS = RunConfig()


def _default(key: str) -> str:
    """`` [default: X]`` for a dotted config key: RunConfig's own default."""
    value = reduce(getattr, key.split("."), _DEFAULTS)
    return f" [default: {'off' if value is None else value}]"


def _train_option(flag: str, text: str, **kwargs: Any) -> Any:
    """A ``train`` option whose help ends with the config's default for it."""
    key = _TRAIN_FLAGS[flag.removeprefix("--").replace("-", "_")]
    return click.option(flag, help=text + _default(key), **kwargs)


def _print_metrics(title: str, metrics: dict, baseline: dict) -> None:
    click.echo(title)
    click.echo(f"  {'metric':<16}{'trained':>10}{'baseline':>10}")
    for key in ("precision_at_1", "map_at_r", "r_precision", "knn_accuracy", "nmi"):
        if key in metrics:
            base = baseline.get(key, float("nan"))
            click.echo(f"  {key:<16}{metrics[key]:>10.4f}{base:>10.4f}")


@main.command("train")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="TOML or YAML run config; flags given here override its values.",
)
@_train_option(
    "--dataset", "digits (bundled), fashion-mnist, or a path: image folder, .npz/.npy, .csv."
)
@click.option(
    "--data-dir",
    help="Folder of fashion-mnist's IDX files (default: the Debian package's install).",
)
@_train_option("--split", "Test split protocol.", type=click.Choice(registries.SPLIT_NAMES))
@click.option("--max-samples", type=int, help="Use a seeded stratified subset of this size.")
@_train_option("--model", "Network: mlp, cnn, hf:PATH_OR_NAME, package.module:factory.")
@_train_option("--loss", "Loss.", type=click.Choice(registries.LOSS_NAMES))
@_train_option("--metric", "Distance of the loss.", type=click.Choice(registries.METRIC_NAMES))
@_train_option("--margin", "Loss margin.", type=float)
@_train_option("--smoothing", "μ of the smoothed hinge (0: hinge).", type=float)
@_train_option("--optimizer", "Optimiser.", type=click.Choice(registries.OPTIMIZER_NAMES))
@_train_option("--lr", "Learning rate.", type=float)
@_train_option("--epochs", "Training epochs.", type=int)
@_train_option("--embedding-dim", "Embedding dimension.", type=int)
@click.option(
    "--threads", type=int, help="torch CPU threads [default: 1 for mlp, all cores for cnn]."
)
@_train_option("--seed", "Seed of everything (same seed, same numbers).", type=int)
@_train_option("--name", "Run name; the run goes to runs/NAME.")
@click.option("--out", help="Run directory (overrides runs/NAME).")
@extra_train_options
@click.option("--overwrite", is_flag=True, help="Replace the run already in the run directory.")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in the run directory from its "
    "last checkpoint (same final result as an uninterrupted run).",
)
def train_command(config_path: str | None, resume: bool, overwrite: bool, **flags: Any) -> None:
    """Train an embedding, evaluate it against the raw-feature baseline, write a report.

    With no options: the bundled digits data, an MLP, batch-all triplet loss on P×K
    batches; the run directory is runs/<dataset>-<model>-<loss>-<time>/ (never an
    existing run's: that one is continued only with --resume, replaced with --overwrite).
    """
    from tripletlab.pipeline.config import load_config
    from tripletlab.pipeline.training import run_training

    extra = extra_overrides(flags)  # checks --device first
    overrides = {_TRAIN_FLAGS[k]: v for k, v in flags.items()} | extra
    cfg = load_config(config_path, overrides)
    result = run_training(cfg, resume=resume, overwrite=overwrite)
    if result.rank != 0:  # under torchrun, rank 0 prints the results
        return
    _print_metrics(
        f"test split ({result.n_test} samples of {result.dataset}):",
        result.metrics,
        result.baseline,
    )
    click.echo(f"run directory: {result.run_dir}  ({result.seconds:.1f} s)")
    if result.report_path is not None:
        click.echo(f"report: {result.report_path}")


@main.command("evaluate")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--dataset", help="Evaluate on all of this dataset instead of the run's test split.")
@click.option("--data-dir", help="Folder of the dataset's files (fashion-mnist).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate_command(run: str, dataset: str | None, data_dir: str | None, as_json: bool) -> None:
    """Evaluate a trained RUN directory: retrieval metrics beside the raw-feature baseline."""
    from tripletlab.pipeline.evaluation import evaluate_run

    result = evaluate_run(run, dataset=dataset, data_dir=data_dir)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    _print_metrics(
        f"{result['dataset']} ({result['n']} samples):", result["metrics"], result["baseline"]
    )


@main.command("embed")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where the embeddings go (.npy, float32, N × D).",
)
def embed_command(run: str, input_path: str, output: str) -> None:
    """Embed INPUT (.npy features, .npz, .csv or an image folder) with a trained RUN."""
    from tripletlab.pipeline.trained import embed_file

    n, dim = embed_file(run, input_path, output)
    click.echo(f"wrote {n} × {dim} embeddings to {output}")


# --- lab: the optimisation lab (tripletlab.lab; issue 5) ----------------------------------


def _float_list(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _str_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


@main.group("lab")
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


@main.command("index")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--data",
    required=True,
    help="The labelled gallery: an image folder (one sub-folder per identity), .npz, .csv…",
)
@click.option("--data-dir", help="Folder of a built-in dataset's files (fashion-mnist).")
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False), help="Index file to write."
)
def index_command(run: str, data: str, data_dir: str | None, output: str) -> None:
    """Embed a labelled gallery with a trained RUN and save a searchable index."""
    from tripletlab.pipeline.recognition import index_run

    index = index_run(run, data, output, data_dir=data_dir)
    threshold = "none" if index.threshold is None else f"{index.threshold:.4g}"
    click.echo(
        f"indexed {len(index)} samples of {index.num_identities} identities "
        f"(dim {index.dim}, {index.metric}, threshold {threshold}) -> {output}"
    )


@main.command("search")
@click.argument("index_path", metavar="INDEX", type=click.Path(exists=True, dir_okay=False))
@click.argument(
    "queries", metavar="QUERY...", nargs=-1, required=True, type=click.Path(exists=True)
)
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--backend",
    default=registries.BACKEND_NAMES[0],
    show_default=True,
    type=click.Choice(registries.BACKEND_NAMES),
    help="kNN search: exact torch, or faiss (pip install tripletlab[faiss]).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the matches as JSON.")
def search_command(
    index_path: str, queries: tuple[str, ...], top_k: int, backend: str, as_json: bool
) -> None:
    """Identify each QUERY (an image, .npy samples, a folder): its nearest identities in INDEX."""
    from tripletlab.pipeline.recognition import search_index

    results = search_index(index_path, list(queries), top_k, backend=backend)
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    for result in results:
        click.echo(result["query"])
        for m in result["matches"]:
            verdict = "" if m["same"] is None else ("  match" if m["same"] else "")
            click.echo(
                f"  {m['rank']:>2}. {m['identity']:<20} distance {m['distance']:.4f}  "
                f"({m['id']}){verdict}"
            )


@main.command("verify")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.argument("a", type=click.Path(exists=True))
@click.argument("b", type=click.Path(exists=True))
@click.option("--threshold", type=float, help="Override the threshold chosen in evaluation.")
@click.option("--json", "as_json", is_flag=True, help="Print the decisions as JSON.")
def verify_command(run: str, a: str, b: str, threshold: float | None, as_json: bool) -> None:
    """Same identity or not: A and B embedded by RUN, at the threshold chosen in evaluation."""
    from tripletlab.pipeline.recognition import verify_run

    results = verify_run(run, a, b, threshold=threshold)
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    for r in results:
        verdict = "same identity" if r["same"] else "different identities"
        prefix = f"pair {r['pair']}: " if len(results) > 1 else ""
        click.echo(
            f"{prefix}{verdict} (distance {r['distance']:.4f}, threshold {r['threshold']:.4f})"
        )


# --- end of recognition section -------------------------------------------------------------

main.add_command(config_command)

if __name__ == "__main__":  # pragma: no cover
    main()
