"""Proposed CLI commands for issue 14 — for the lead to paste into cli.py after the pipeline
restructure (the deploy helper did not edit cli.py). They only parse and call
tripletlab.deploy / tripletlab.serve; errors are TripletlabError subclasses, which the
existing `_Group` prints as one line with exit status 2.

    tripletlab export RUN -o DIR [--format onnx|torchscript] [--gallery FOLDER]
    tripletlab serve RUN_OR_BUNDLE [--host 127.0.0.1] [--port 8000] [--token-file FILE]
                     [--gallery FILE] [--max-upload-mb 16] [--threads N]
"""

# ruff: noqa
# mypy: ignore-errors
import click

from tripletlab.cli import main  # in cli.py itself: the existing group


@main.command("export")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option(
    "-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False),
    help="Folder to write the model, preprocess.json and metadata.json to.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["onnx", "torchscript"]), default="onnx",
    show_default=True, help="Model format (the recognizer and `serve` run ONNX).",
)
@click.option(
    "--gallery", type=click.Path(exists=True, file_okay=False),
    help="Also make OUT a bundle: enrol this <identity>/<images> folder (ONNX only).",
)
@click.option("--threshold", type=float, help="Override the identification threshold.")
def export_command(run: str, out_dir: str, fmt: str, gallery: str | None, threshold: float | None) -> None:
    """Export a trained RUN: the model (dynamic batch axis), its preprocessing and metadata."""
    from tripletlab.deploy.export import export_run

    folder = export_run(run, fmt, out_dir)
    click.echo(f"exported {fmt} model to {folder}")
    if gallery is not None or threshold is not None:
        if fmt != "onnx":
            raise click.UsageError("--gallery/--threshold make a bundle, which needs --format onnx")
        from tripletlab.deploy.bundle import make_bundle

        make_bundle(folder, folder, gallery=gallery, identification_threshold=threshold)
        click.echo(f"bundle ready in {folder} (serve it: tripletlab serve {folder})")


@main.command("serve")
@click.argument("target", metavar="RUN_OR_BUNDLE", type=click.Path(exists=True, file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback only by default).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--token-file", type=click.Path(exists=True, dir_okay=False),
    help="File whose first line is the write token (else $TRIPLETLAB_TOKEN; neither: read-only).",
)
@click.option("--gallery", type=click.Path(dir_okay=False), help="Gallery store [default: RUN_OR_BUNDLE/gallery.sqlite].")
@click.option("--max-upload-mb", default=16.0, show_default=True, type=click.FloatRange(min=0.001))
@click.option("--threads", type=click.IntRange(min=1), help="onnxruntime threads [default: all cores].")
def serve_command(
    target: str, host: str, port: int, token_file: str | None, gallery: str | None,
    max_upload_mb: float, threads: int | None,
) -> None:
    """Serve RUN_OR_BUNDLE over HTTP: identify, verify, enrol; a web page at http://HOST:PORT/."""
    from tripletlab.serve.main import serve_main

    click.echo(f"serving {target} on http://{host}:{port}/ (API docs: /docs)")
    serve_main(
        target, host, port, token_file, gallery=gallery,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024), threads=threads,
    )
