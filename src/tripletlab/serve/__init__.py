"""The recognizer as an HTTP service: FastAPI app, bearer-token writes, a web page.

* :func:`create_app` — the FastAPI application over a bundle, an exported folder or a run;
* :func:`serve_main` — run it with uvicorn (what ``tripletlab serve`` calls).

Needs the ``serve`` extra (fastapi, uvicorn, python-multipart) and ``deploy`` (onnxruntime,
pillow); names are imported lazily, so ``import tripletlab.serve`` alone loads neither.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tripletlab.serve.app import create_app
    from tripletlab.serve.main import serve_main

_LAZY = {"create_app": "tripletlab.serve.app", "serve_main": "tripletlab.serve.main"}

__all__ = ["create_app", "serve_main"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'tripletlab.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
