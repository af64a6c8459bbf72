"""``tripletlab evaluate``: retrieval metrics of a run, or a dataset's own protocol with and
without re-ranking / query expansion.

Without a layout (``--dataset market1501:PATH`` …, a manifest CSV, or a run trained on one)
and without ``--query/--gallery``, the run's test split is evaluated beside the raw-feature
baseline, with the kNN search chosen by ``--exact`` / ``--approximate ivf|hnsw`` (faiss
parameters ``--nlist``/``--nprobe`` or ``--hnsw-m``/``--ef-construction``/``--ef-search``),
``--chunk-memory`` and ``--knn-threads``. An approximate search is shown with each metric's
exact-vs-approximate gap, measured on ``--gap-queries`` sampled queries (0: not measured).
``--sharded`` runs under ``torchrun --nproc-per-node N -m tripletlab.cli evaluate RUN
--sharded``: each rank embeds and queries its share of the set (gloo), rank 0 prints the
result, equal to one process's. Otherwise the protocol of the layout (or of the query /
gallery sets) is computed exactly in chunks of ``--chunk-memory`` MiB, each metric shown
plain and with ``--rerank`` / ``--qe``.

A flag that does not apply to the evaluation asked for (a faiss parameter of the other
index type or without ``--approximate``, ``--sharded`` outside torchrun…) is refused with
one line and exit status 2, never ignored.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import click

from tripletlab.errors import ConfigError
from tripletlab.evaluate.approximate import DEFAULT_GAP_QUERIES

__all__ = ["evaluate_command"]

#: Bytes in the MiB of ``--chunk-memory``.
MIB = 2**20
#: The exact kNN search of each ``--backend``: torch's chunked GEMM, or faiss' flat index.
KNN_METHOD_OF_BACKEND = {"torch": "exact", "faiss": "flat"}
#: ``--approximate`` choices: faiss indexes whose neighbours may be wrong.
APPROXIMATE_METHODS = ("ivf", "hnsw")
#: Suffix of a metric's exact-vs-approximate gap in the metrics.
GAP_SUFFIX = "_approximation_gap"
#: Metrics printed for the run's test split (the rest are in ``--json``).
SUMMARY_KEYS = ("precision_at_1", "map_at_r", "r_precision", "knn_accuracy", "nmi")


def _print_plain(result: dict[str, Any]) -> None:
    metrics = result["metrics"]
    gaps = {key: metrics.get(f"{key}{GAP_SUFFIX}") for key in SUMMARY_KEYS}
    with_gap = any(_number(gap) for gap in gaps.values())
    click.echo(f"{result['dataset']} ({result['n']} samples):")
    click.echo(f"  {'metric':<16}{'trained':>10}{'baseline':>10}" + (f"{'gap':>10}" * with_gap))
    for key in SUMMARY_KEYS:
        if key in metrics:
            trained, base = metrics[key], result["baseline"].get(key)
            gap = f"{_signed(gaps[key]):>10}" if with_gap else ""
            click.echo(f"  {key:<16}{_cell(trained):>10}{_cell(base):>10}{gap}")
    for group, reason in result.get("unavailable", {}).items():
        click.echo(f"  {group} metrics n/a: {reason}")
    search = result.get("search", {})
    if search.get("method", "exact") != "exact":
        options = ", ".join(f"{k}={v}" for k, v in search.items() if k != "method")
        click.echo(f"  trained: {search['method']} search" + (f" ({options})" if options else ""))
    if with_gap:
        click.echo(
            f"  gap: approximate − exact on {int(metrics['approximation_gap_queries']):,} "
            f"sampled queries against all {result['n']:,} references"
        )


def _signed(value: Any) -> str:
    """A gap as printed: signed, 4 decimals; blank for a metric without one."""
    return f"{value:+.4f}" if _number(value) else ""


def _cell(value: Any) -> str:
    """A metric as printed: 4 decimals, or ``n/a`` where the labels cannot support it."""
    return f"{value:.4f}" if _number(value) else "n/a"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _print_protocol(result: dict[str, Any]) -> None:
    click.echo(
        f"{result['dataset']}: {result['protocol']} protocol, {result['n_query']} queries, "
        f"{result['n_gallery']} gallery items"
    )
    variants = result.get("variants")
    if variants:
        names = list(variants)
        keys = [k for k, v in variants["plain"].items() if _number(v) and not k.startswith("n_")]
        click.echo(f"  {'metric':<18}" + "".join(f"{n:>12}" for n in names))
        for key in keys:
            row = "".join(f"{variants[n].get(key, math.nan):>12.4f}" for n in names)
            click.echo(f"  {key:<18}{row}")
    verification = result.get("verification")
    if verification:
        click.echo(
            f"  10-fold accuracy {verification['accuracy_mean']:.4f} "
            f"± {verification['accuracy_std']:.4f}"
        )
        for key, value in verification.items():
            if key.startswith("tar_at_far_") and key.endswith("_mean"):
                click.echo(f"  {key.removesuffix('_mean'):<18}{value:>12.4f}")
    identification = result.get("identification")
    if identification:
        for key, value in identification.items():
            if key.startswith("dir_at_far_"):
                click.echo(f"  {key:<18}{value:>12.4f}")
    if result.get("report"):
        click.echo(f"report: {result['report']}")
    if result.get("note"):
        click.echo(result["note"])


def _run_dataset(run: str) -> str | None:
    """The dataset a run was trained on, from its ``config.json`` (None when unreadable:
    the plain evaluation then reports what is wrong with the run)."""
    from tripletlab.pipeline.run_dir import RunDir

    try:
        dataset = json.loads(RunDir(run).config_path.read_text())["data"]["dataset"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return dataset if isinstance(dataset, str) else None


#: faiss parameters of each ``--approximate`` index type: ``knn_options`` key -> its flag.
INDEX_OPTIONS: dict[str, dict[str, str]] = {
    "ivf": {"nlist": "--nlist", "nprobe": "--nprobe"},
    "hnsw": {"hnsw_m": "--hnsw-m", "ef_construction": "--ef-construction",
             "ef_search": "--ef-search"},
}  # fmt: skip


def _knn_flags(
    exact: bool,
    approximate: str | None,
    backend: str | None,
    threads: int | None,
    faiss: dict[str, int | None],
    gap_queries: int | None,
) -> dict[str, Any]:
    """The kNN search the flags ask for (``evaluate_run``'s ``**knn``); a flag that does not
    apply to the chosen search is refused, never ignored."""
    if exact and approximate:
        raise ConfigError("--exact and --approximate exclude each other")
    if approximate and backend:
        raise ConfigError("--backend chooses an exact search; --approximate is faiss already")
    knn: dict[str, Any] = {}
    if approximate or backend:
        knn["method"] = approximate or KNN_METHOD_OF_BACKEND[backend or "torch"]
    if threads is not None:
        knn["threads"] = threads
    options = _index_options(approximate, faiss)
    if options:
        knn["knn_options"] = options
    if gap_queries is not None and not approximate:
        raise ConfigError("--gap-queries measures an approximate search: add --approximate")
    if approximate and gap_queries != 0:  # an approximate number comes with its error
        knn["gap_queries"] = DEFAULT_GAP_QUERIES if gap_queries is None else gap_queries
    return knn


def _index_options(approximate: str | None, faiss: dict[str, int | None]) -> dict[str, int]:
    """The given faiss parameters, each checked against the ``--approximate`` index type."""
    given = {key: value for key, value in faiss.items() if value is not None}
    for index_type, flags in INDEX_OPTIONS.items():
        for key in given.keys() & flags.keys():
            if approximate != index_type:
                raise ConfigError(f"{flags[key]} applies to --approximate {index_type} only")
    return given


@click.command("evaluate")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--dataset",
    help="Evaluate on this dataset instead of the run's test split: a layout "
    "(market1501:PATH, lfw:PATH, cub200:PATH, cars196:PATH, sop:PATH, inshop:PATH), a manifest "
    "CSV (its own protocol), or any dataset path (all of it).",
)
@click.option("--data-dir", help="Folder of the dataset's files (fashion-mnist).")
@click.option("--query", help="Query set: layout spec, manifest, image folder or .npz.")
@click.option("--gallery", help="Gallery set (same forms as --query).")
@click.option("--rerank", is_flag=True, help="Also k-reciprocal re-ranking (Zhong et al. 2017).")
@click.option("--k1", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--k2", default=6, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--lambda", "lambda_value", default=0.3, show_default=True, type=click.FloatRange(0, 1)
)
@click.option("--qe", type=click.Choice(["aqe", "alpha-qe"]), help="Also query expansion.")
@click.option("--qe-n", default=5, show_default=True, type=click.IntRange(min=1))
@click.option("--qe-alpha", default=3.0, show_default=True, type=click.FloatRange(min=0))
@click.option("--exact", is_flag=True, help="Exact kNN search (the default).")
@click.option(
    "--approximate",
    type=click.Choice(APPROXIMATE_METHODS),
    help="faiss approximate kNN; each metric's gap to exact is measured (--gap-queries).",
)
@click.option(
    "--backend",
    type=click.Choice(list(KNN_METHOD_OF_BACKEND)),
    help="Exact kNN by torch (default) or by faiss (flat index).",
)
@click.option(
    "--chunk-memory",
    type=click.IntRange(min=1),
    help="MiB of working memory of one chunk of query rows [default: 512].",
)
@click.option("--knn-threads", type=click.IntRange(min=1), help="Threads of the kNN search.")
@click.option(
    "--nlist", type=click.IntRange(min=1), help="IVF cells (--approximate ivf) [default: 4·√N]."
)
@click.option(
    "--nprobe", type=click.IntRange(min=1), help="IVF cells searched per query [default: 16]."
)
@click.option(
    "--hnsw-m",
    type=click.IntRange(min=1),
    help="HNSW links per node (--approximate hnsw) [default: 32].",
)
@click.option(
    "--ef-construction", type=click.IntRange(min=1), help="HNSW build beam width [default: 40]."
)
@click.option(
    "--ef-search", type=click.IntRange(min=1), help="HNSW search beam width [default: max(64, 2k)]."
)
@click.option(
    "--gap-queries",
    type=click.IntRange(min=0),
    help="With --approximate: queries on which each metric's exact-vs-approximate gap is "
    f"measured, 0 for none [default: {DEFAULT_GAP_QUERIES:,}].",
)
@click.option(
    "--sharded",
    is_flag=True,
    help="Split the queries over the ranks of `torchrun --nproc-per-node N -m tripletlab.cli "
    "evaluate RUN --sharded` (exact search; rank 0 prints).",
)
@click.option(
    "--report/--no-report",
    default=True,
    show_default=True,
    help="Protocol evaluations: write RUN/evaluation/report.{md,html}.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate_command(
    run: str,
    dataset: str | None,
    data_dir: str | None,
    query: str | None,
    gallery: str | None,
    exact: bool,
    approximate: str | None,
    backend: str | None,
    chunk_memory: int | None,
    knn_threads: int | None,
    nlist: int | None,
    nprobe: int | None,
    hnsw_m: int | None,
    ef_construction: int | None,
    ef_search: int | None,
    gap_queries: int | None,
    sharded: bool,
    report: bool,
    as_json: bool,
    **post: Any,
) -> None:
    """Evaluate a trained RUN directory: its test split beside the raw-feature baseline, or a
    dataset's own protocol (re-id, DML, LFW) with and without re-ranking / query expansion."""
    from pathlib import Path

    from tripletlab.pipeline.layouts import is_layout_dataset
    from tripletlab.pipeline.protocols import PostProcessing

    budget: dict[str, Any] = {}
    if chunk_memory is not None:
        budget["memory_budget_bytes"] = chunk_memory * MIB
    options = PostProcessing(**budget, **post)
    faiss = {"nlist": nlist, "nprobe": nprobe, "hnsw_m": hnsw_m}
    faiss |= {"ef_construction": ef_construction, "ef_search": ef_search}
    knn = _knn_flags(exact, approximate, backend, knn_threads, faiss, gap_queries)
    protocol = query is not None or gallery is not None or is_layout_dataset(dataset)
    if not protocol and dataset is None:
        protocol = is_layout_dataset(_run_dataset(run))
    if protocol:
        if knn or sharded:
            raise ConfigError(
                "a protocol's mAP / mINP need full exact rankings on one process: --approximate, "
                "--backend, --knn-threads, --sharded and the faiss options apply to the run's "
                "test-split evaluation"
            )
        from tripletlab.pipeline.protocol_run import evaluate_protocol

        result = evaluate_protocol(
            run,
            dataset=dataset,
            query=query,
            gallery=gallery,
            options=options,
            report_dir=Path(run) / "evaluation" if report else None,
        )
        click.echo(json.dumps(result, indent=2)) if as_json else _print_protocol(result)
        return
    if options.asked:
        raise ConfigError(
            "--rerank and --qe need a protocol: a layout --dataset or --query/--gallery"
        )
    _evaluate_split(run, dataset, data_dir, knn | budget, sharded, as_json)


def _evaluate_split(
    run: str,
    dataset: str | None,
    data_dir: str | None,
    knn: dict[str, Any],
    sharded: bool,
    as_json: bool,
) -> None:
    """The run's test split (or all of ``dataset``), on one process or on torchrun's ranks."""
    from tripletlab.pipeline.evaluation import evaluate_run

    rank = _join_ranks(knn) if sharded else _single_process()
    try:
        result = evaluate_run(run, dataset=dataset, data_dir=data_dir, sharded=sharded, **knn)
    finally:
        if sharded:
            from tripletlab.distributed import destroy_distributed

            destroy_distributed()
    if rank == 0:  # under torchrun every rank holds the same result; one prints it
        click.echo(json.dumps(result, indent=2)) if as_json else _print_plain(result)


def _launched_world_size() -> int:
    """The number of processes ``torchrun`` started (its ``WORLD_SIZE``; 1 without it)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number") from None


def _single_process() -> int:
    """Rank 0 of one process; under torchrun without ``--sharded`` every rank would repeat
    the whole evaluation and print it, so that is refused."""
    world = _launched_world_size()
    if world > 1:
        raise ConfigError(
            f"launched as {world} processes (WORLD_SIZE={world}): add --sharded to split the "
            "evaluation over them"
        )
    return 0


def _join_ranks(knn: dict[str, Any]) -> int:
    """Join torchrun's process group (gloo: the embeddings are on the CPU); this rank."""
    from tripletlab import distributed as tdist

    if _launched_world_size() < 2:
        raise ConfigError(
            "--sharded splits the queries over torchrun's processes: run `torchrun "
            "--nproc-per-node N -m tripletlab.cli evaluate RUN --sharded` (WORLD_SIZE is 1 here)"
        )
    if knn.get("method") in APPROXIMATE_METHODS:
        raise ConfigError("--sharded evaluation is exact: drop --approximate")
    tdist.init_distributed("gloo")
    return tdist.get_rank()
