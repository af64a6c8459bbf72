"""``tripletlab compare RUN RUN… -o DIR``: one table of the runs' test metrics (changes
against the first run) and their training curves overlaid, as compare.md (+ compare.html)."""

from __future__ import annotations

import click

__all__ = ["compare_command"]


@click.command("compare")
@click.argument(
    "runs",
    metavar="RUN RUN...",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, file_okay=False),
)
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    help="A metric key of the table (repeatable) [default: those all runs share].",
)
def compare_command(runs: tuple[str, ...], out: str, metrics: tuple[str, ...]) -> None:
    """Compare two or more trained RUN directories side by side."""
    from tripletlab.report.compare import compare_runs

    comparison = compare_runs(list(runs), out, metrics=list(metrics) or None)
    click.echo(comparison.table)
    click.echo(f"report: {comparison.markdown_path}")
    if comparison.html_path is None:
        click.echo("compare.html skipped: pip install markdown-it-py (tripletlab[html])")
    else:
        click.echo(f"html: {comparison.html_path}")
