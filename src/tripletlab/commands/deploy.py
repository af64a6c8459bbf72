"""``tripletlab export`` and ``tripletlab serve``: from a trained run to a recognizer.

    tripletlab export RUN -o DIR [--format onnx|torchscript] [--gallery FOLDER] [--threshold T]
    tripletlab serve RUN_OR_BUNDLE [--host 127.0.0.1] [--port 8000] [--token-file FILE]
                     [--gallery FILE] [--max-upload-mb 16] [--threads N]

Both only parse and call :mod:`tripletlab.deploy` / :mod:`tripletlab.serve`; a user error
there is a :class:`~tripletlab.errors.TripletlabError`, printed by the CLI as one line with
exit status 2.
"""

from __future__ import annotations

import click

__all__ = ["export_command", "serve_command"]

#: Upload limit of ``serve`` unless told otherwise: a phone photo fits, a bomb does not.
DEFAULT_MAX_UPLOAD_MB = 16.0
BYTES_PER_MB = 1024 * 1024


@click.command("export")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option(
    "-o",
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder to write the model, preprocess.json and metadata.json to.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["onnx", "torchscript"]),
    default="onnx",
    show_default=True,
    help="Model format (the torch-free recognizer and `serve` run ONNX).",
)
@click.option(
    "--gallery",
    type=click.Path(exists=True, file_okay=False),
    help="Also make OUT a bundle: enrol this <identity>/<images> folder (ONNX only).",
)
@click.option("--threshold", type=float, help="Override the identification threshold.")
def export_command(
    run: str, out_dir: str, fmt: str, gallery: str | None, threshold: float | None
) -> None:
    """Export a trained RUN: the model (dynamic batch axis), its preprocessing and metadata."""
    from tripletlab.deploy.export import export_run

    if (gallery is not None or threshold is not None) and fmt != "onnx":
        raise click.UsageError("--gallery/--threshold make a bundle, which needs --format onnx")
    folder = export_run(run, fmt, out_dir)
    click.echo(f"exported {fmt} model to {folder}")
    if gallery is not None or threshold is not None:
        from tripletlab.deploy.bundle import make_bundle

        make_bundle(folder, folder, gallery=gallery, identification_threshold=threshold)
        click.echo(f"bundle ready in {folder} (serve it: tripletlab serve {folder})")


@click.command("serve")
@click.argument("target", metavar="RUN_OR_BUNDLE", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default)."
)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False),
    help="File whose first line is the write token (else $TRIPLETLAB_TOKEN; neither: read-only).",
)
@click.option(
    "--gallery",
    type=click.Path(dir_okay=False),
    help="Gallery store [default: RUN_OR_BUNDLE/gallery.sqlite].",
)
@click.option(
    "--max-upload-mb",
    default=DEFAULT_MAX_UPLOAD_MB,
    show_default=True,
    type=click.FloatRange(min=0.001),
    help="Largest accepted upload.",
)
@click.option("--threads", type=click.IntRange(min=1), help="Inference threads [default: all].")
def serve_command(
    target: str,
    host: str,
    port: int,
    token_file: str | None,
    gallery: str | None,
    max_upload_mb: float,
    threads: int | None,
) -> None:
    """Serve RUN_OR_BUNDLE over HTTP: identify, verify, enrol; a web page at http://HOST:PORT/."""
    from tripletlab.serve.main import serve_main

    click.echo(f"serving {target} on http://{host}:{port}/ (API docs: /docs)", err=True)
    serve_main(
        target,
        host,
        port,
        token_file,
        gallery=gallery,
        max_upload_bytes=int(max_upload_mb * BYTES_PER_MB),
        threads=threads,
    )
