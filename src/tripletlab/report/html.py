"""A self-contained HTML page with the same content as a Markdown report.

The Markdown is rendered by markdown-it-py (CommonMark plus GitHub tables); every image it
references (``![caption](figure.png)``, relative to the report's folder) is embedded as a
base64 ``data:`` URI, and the style sheet is inline, so the page is one file that opens
anywhere — no network, no sibling files. A missing image is an error naming it rather than
a broken picture. Raw HTML in the Markdown is escaped, not passed through.

Example:
    >>> html = render_html("# Run\\n\\n| a |\\n|---|\\n| 1 |\\n", title="demo")
    >>> "<table>" in html and "<h1>Run</h1>" in html
    True
"""

from __future__ import annotations

import base64
import html as html_escape
import mimetypes
from pathlib import Path

from tripletlab.errors import DataError, TripletlabError

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 70rem; padding: 0 1rem; color: #1b1b1b; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.92rem; }
th, td { border: 1px solid #c8c8c8; padding: 0.25rem 0.6rem; }
th { background: #f1f1f1; }
td:not(:first-child) { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; border: 1px solid #e0e0e0; }
code { background: #f4f4f4; padding: 0 0.2rem; }
"""
_IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
}


class HtmlUnavailable(TripletlabError):
    """markdown-it-py (the ``html`` extra) is not installed."""


def _markdown_parser():
    try:
        from markdown_it import MarkdownIt
    except ImportError:  # an optional extra: only the HTML page needs it
        raise HtmlUnavailable(
            "the HTML report needs markdown-it-py: pip install 'tripletlab[html]'"
        ) from None
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def render_html(markdown_text: str, *, base_dir: str | Path = ".", title: str = "report") -> str:
    """The HTML page of ``markdown_text`` with images from ``base_dir`` embedded.

    Raises:
        DataError: an image the Markdown references does not exist.
    """
    parser = _markdown_parser()
    tokens = parser.parse(markdown_text)
    base = Path(base_dir)
    for token in tokens:
        for child in token.children or []:
            if child.type == "image":
                child.attrSet("src", _data_uri(base, str(child.attrGet("src"))))
    body = parser.renderer.render(tokens, parser.options, {})
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        # An empty icon: browsers would otherwise request /favicon.ico and log a failure.
        '<link rel="icon" href="data:,">\n'
        f"<title>{html_escape.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n{body}</body>\n</html>\n"
    )


def _data_uri(base: Path, source: str) -> str:
    if source.startswith("data:"):
        return source
    path = Path(source) if Path(source).is_absolute() else base / source
    if not path.is_file():
        raise DataError(f"the report references an image that does not exist: {path}")
    mime = _IMAGE_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
    if mime is None or not mime.startswith("image/"):
        raise DataError(f"the report references {path}, which is not a PNG/JPEG/SVG image")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def write_html(markdown_path: str | Path, html_path: str | Path | None = None) -> Path:
    """Render the Markdown file to a self-contained HTML file (default: same name, ``.html``)."""
    markdown_path = Path(markdown_path)
    html_path = markdown_path.with_suffix(".html") if html_path is None else Path(html_path)
    text = markdown_path.read_text(encoding="utf-8")
    title = next(
        (line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")),
        markdown_path.stem,
    )
    html_path.write_text(
        render_html(text, base_dir=markdown_path.parent, title=title), encoding="utf-8"
    )
    return html_path
