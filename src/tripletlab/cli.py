"""The ``tripletlab`` command line. It only parses arguments and calls the pipeline.

Commands: ``train``, ``evaluate``, ``embed`` (a run), ``index``, ``search``, ``verify``
(recognition with a trained run) here; ``export`` / ``serve`` (a recognizer, in
:mod:`tripletlab.commands.deploy`) and ``lab …`` (the optimisation lab, in
:mod:`tripletlab.commands.lab`) are registered from :mod:`tripletlab.commands`.
Choices and defaults shown in ``--help`` come from :mod:`tripletlab.pipeline.registries` and
:class:`~tripletlab.pipeline.config.RunConfig`, so they cannot drift from what a run does.

Errors a user can cause (a :class:`~tripletlab.errors.TripletlabError`: a bad flag value,
config or dataset; an ``OSError``: a missing or unreadable file) are printed as one line,
``error: …``, and the process exits with status 2. Ctrl-C prints one line and exits with
status 130 (128 + SIGINT, the shell's convention); a run keeps its last checkpoint for
``--resume``. Any other exception is a bug in tripletlab and keeps its traceback.
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

#: Exit status after Ctrl-C: 128 + SIGINT, as a shell reports a process stopped by it.
INTERRUPTED_EXIT = 130


class _Group(click.Group):
    """A click group that turns user errors into one line on stderr and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("interrupted (a run continues with --resume)", err=True)
            sys.exit(INTERRUPTED_EXIT)
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
            click.echo(f"  {key:<16}{_number(metrics[key])}{_number(baseline.get(key))}")


def _number(value: float | None) -> str:
    """A metric in a 10-wide column; ``n/a`` for one the data could not support."""
    return f"{'n/a':>10}" if value is None else f"{value:>10.4f}"


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
    "last checkpoint (same final result as an uninterrupted run). Settings given again must "
    "equal the run's.",
)
@click.option(
    "--extend",
    is_flag=True,
    help="With --resume: allow a larger --epochs than the run started with.",
)
def train_command(
    config_path: str | None, resume: bool, extend: bool, overwrite: bool, **flags: Any
) -> None:
    """Train an embedding, evaluate it against the raw-feature baseline, write a report.

    With no options: the bundled digits data, an MLP, batch-all triplet loss on P×K
    batches; the run directory is runs/<dataset>-<model>-<loss>-<time>/ (never an
    existing run's: that one is continued only with --resume, replaced with --overwrite).
    """
    from tripletlab.pipeline.config import load_config
    from tripletlab.pipeline.training import run_training

    if extend and not resume:
        raise click.UsageError("--extend only applies with --resume")
    extra = extra_overrides(flags)  # checks --device first
    overrides = {_TRAIN_FLAGS[k]: v for k, v in flags.items()} | extra
    cfg = load_config(config_path, overrides)
    result = run_training(cfg, resume=resume, extend=extend, overwrite=overwrite)
    if result.rank != 0:  # under torchrun, rank 0 prints the results
        return
    _print_metrics(
        f"test split ({result.n_test} samples of {result.dataset}):",
        result.metrics,
        result.baseline,
    )
    for group, reason in result.summary.get("unavailable", {}).items():
        click.echo(f"  {group} metrics n/a: {reason}")
    click.echo(f"run directory: {result.run_dir}  ({result.seconds:.1f} s)")
    if result.report_path is not None:
        click.echo(f"report: {result.report_path}")


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
    """Embed INPUT (an image, a folder of images, .npy, .npz or .csv) with a trained RUN;
    the file of each row is listed in OUTPUT's .ids.txt."""
    from tripletlab.pipeline.identification import embed_inputs, ids_path_of

    n, dim = embed_inputs(run, input_path, output)
    click.echo(f"wrote {n} × {dim} embeddings to {output} (rows: {ids_path_of(output)})")


# --- lab: the optimisation lab (tripletlab.lab; issue 5) ----------------------------------


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
@click.option(
    "--target-far",
    type=click.FloatRange(0, 1),
    help="Choose the identification threshold at this FAR on the gallery's impostor "
    "comparisons; `search` answers `unknown` beyond it.",
)
def index_command(
    run: str, data: str, data_dir: str | None, output: str, target_far: float | None
) -> None:
    """Embed a labelled gallery (image folder, field layout, manifest, .npz…) with a trained
    RUN and save a searchable index."""
    from tripletlab.pipeline.recognition import index_run

    index = index_run(run, data, output, data_dir=data_dir, target_far=target_far)
    threshold = "none" if index.threshold is None else f"{index.threshold:.4g}"
    click.echo(
        f"indexed {len(index)} samples of {index.num_identities} identities "
        f"(dim {index.dim}, {index.metric}, threshold {threshold}) -> {output}"
    )
    chosen = index.info.get("identification")
    if chosen:
        click.echo(
            f"identification threshold {chosen['threshold']:.4g} at FAR {chosen['target_far']:g} "
            f"(achieved {chosen['achieved_far']:.4f} on {chosen['n_impostors']} impostor "
            "comparisons)"
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
        answer = ""
        if "known" in result:
            answer = (
                f"  -> {result['identity']} (threshold {result['identification_threshold']:.4g} "
                f"at FAR {result['target_far']:g})"
            )
        click.echo(result["query"] + answer)
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
@click.option(
    "--target-far",
    type=click.FloatRange(0, 1),
    help="Choose the threshold at this FAR on the run's test impostor pairs.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the decisions as JSON.")
def verify_command(
    run: str, a: str, b: str, threshold: float | None, target_far: float | None, as_json: bool
) -> None:
    """Same identity or not: A and B (images, folders, .npy/.npz) embedded by RUN, at the
    threshold chosen in evaluation, and the FAR that threshold has."""
    from tripletlab.pipeline.recognition import verify_run

    results = verify_run(run, a, b, threshold=threshold, target_far=target_far)
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    for r in results:
        verdict = "same identity" if r["same"] else "different identities"
        prefix = f"{r['a']} vs {r['b']}: " if len(results) > 1 else ""
        far = "FAR unknown" if r["far"] is None else f"FAR {r['far']:.4g}"
        click.echo(
            f"{prefix}{verdict} (distance {r['distance']:.4f}, threshold {r['threshold']:.4f} "
            f"set at {far} on the run's test impostor pairs)"
        )


# --- end of recognition section -------------------------------------------------------------

# --- commands defined in tripletlab.commands (too large for this file) ---------------------

from tripletlab.commands.compare import compare_command  # noqa: E402
from tripletlab.commands.deploy import export_command, serve_command  # noqa: E402
from tripletlab.commands.evaluate import evaluate_command  # noqa: E402
from tripletlab.commands.lab import lab_group  # noqa: E402

main.add_command(evaluate_command)
main.add_command(compare_command)
main.add_command(lab_group)
main.add_command(export_command)
main.add_command(serve_command)
main.add_command(config_command)

if __name__ == "__main__":  # pragma: no cover
    main()
