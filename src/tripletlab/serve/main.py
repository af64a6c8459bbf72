"""Run the service with uvicorn: :func:`serve_main`, what ``tripletlab serve`` calls.

It binds 127.0.0.1 by default: reachable from this machine only. Serving on another address
is a choice to make explicitly (``host="0.0.0.0"``), behind TLS in production, since the
bearer token travels in a header.

Example:
    >>> serve_main("bundle/", port=8000, token_file="token.txt")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from tripletlab.deploy.images import DEFAULT_MAX_PIXELS

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "serve_main"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def serve_main(
    target: str | Path,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token_file: str | Path | None = None,
    *,
    gallery: str | Path | None = None,
    max_upload_bytes: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    threads: int | None = None,
    log_level: str = "info",
) -> None:
    """Serve ``target`` (bundle, exported folder or run directory) until interrupted.

    Args:
        target: what to serve; a folder without a gallery starts with an empty one.
        host, port: where to listen (127.0.0.1:8000 by default).
        token_file: file whose first line is the write token (else ``TRIPLETLAB_TOKEN``;
            neither → writes are refused, reads work).
        gallery: the gallery store file (default ``<target>/gallery.sqlite``).
        max_upload_bytes: request body limit (default 16 MiB).
        max_pixels: the largest decoded image accepted.
        threads: onnxruntime intra-op threads.
        log_level: uvicorn's log level.
    """
    import uvicorn

    from tripletlab.serve.app import DEFAULT_MAX_UPLOAD_BYTES, create_app

    app = create_app(
        target,
        gallery=gallery,
        token_file=token_file,
        max_upload_bytes=max_upload_bytes or DEFAULT_MAX_UPLOAD_BYTES,
        max_pixels=max_pixels,
        threads=threads,
    )
    uvicorn.run(app, host=host, port=int(port), log_level=log_level)
