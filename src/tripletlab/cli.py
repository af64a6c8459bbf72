"""The ``tripletlab`` command line. It only parses arguments and calls the library.

Errors a user can cause (a bad flag value, config, path or dataset) are printed as one line,
``error: …``, and the process exits with status 2, without a traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from tripletlab.errors import TripletlabError

USER_ERRORS = (
    TripletlabError,
    ValueError,
    TypeError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)


class _Group(click.Group):
    """A click group that turns user errors into one line on stderr and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tripletlab")
def main() -> None:
    """Deep metric learning with the triplet loss: train, evaluate, mine, analyse."""


# --- sub-commands are registered below, one section per area -------------------------------


# --- train / evaluate / embed (the run pipeline: tripletlab.train.run) ----------------------

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
@click.option(
    "--dataset",
    help="digits (default, bundled), fashion-mnist, or a path: image folder, .npz/.npy, .csv.",
)
@click.option(
    "--data-dir",
    help="Folder of fashion-mnist's IDX files (default: the Debian package's install).",
)
@click.option(
    "--split",
    type=click.Choice(["stratified", "held-out-classes"]),
    help="Test split protocol [default: stratified].",
)
@click.option("--max-samples", type=int, help="Use a seeded stratified subset of this size.")
@click.option("--model", type=click.Choice(["mlp", "cnn"]), help="Network [default: mlp].")
@click.option(
    "--loss",
    type=click.Choice(["batch-all", "batch-hard", "semi-hard", "contrastive"]),
    help="Loss [default: batch-all].",
)
@click.option(
    "--metric",
    type=click.Choice(["sqeuclidean", "euclidean", "cosine"]),
    help="Distance of the loss [default: sqeuclidean].",
)
@click.option("--margin", type=float, help="Loss margin [default: 0.2].")
@click.option("--smoothing", type=float, help="μ of the smoothed hinge (0: hinge) [default: off].")
@click.option(
    "--optimizer", type=click.Choice(["sgd", "adam", "adamw"]), help="Optimiser [default: adam]."
)
@click.option("--lr", type=float, help="Learning rate.")
@click.option("--epochs", type=int, help="Training epochs.")
@click.option("--embedding-dim", type=int, help="Embedding dimension.")
@click.option("--threads", type=int, help="torch CPU threads.")
@click.option("--seed", type=int, help="Seed of everything (same seed, same numbers) [default: 0].")
@click.option("--name", help="Run name; the run goes to runs/NAME [default: digits-mlp].")
@click.option("--out", help="Run directory (overrides runs/NAME).")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in the run directory from its "
    "last checkpoint (same final result as an uninterrupted run).",
)
def train_command(config_path: str | None, resume: bool, **flags: Any) -> None:
    """Train an embedding, evaluate it against the raw-feature baseline, write a report.

    With no options: the bundled digits data, an MLP, batch-all triplet loss on P×K
    batches; the run directory is runs/digits-mlp/.
    """
    from tripletlab.train.config import load_config
    from tripletlab.train.run import run_training

    overrides = {_TRAIN_FLAGS[k]: v for k, v in flags.items()}
    cfg = load_config(config_path, overrides)
    result = run_training(cfg, resume=resume)
    _print_metrics(
        f"test split ({result.extra['n_test']} samples of {result.extra['dataset']}):",
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
    import json

    from tripletlab.train.run import evaluate_run

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
    from tripletlab.train.run import embed_file

    n, dim = embed_file(run, input_path, output)
    click.echo(f"wrote {n} × {dim} embeddings to {output}")


if __name__ == "__main__":  # pragma: no cover
    main()
