"""From a trained run to a working recognizer: load, export, bundle, gallery store.

* :func:`load_run` → :class:`LoadedRun` (torch): a run as a ready-to-use embedder;
* :func:`export_run` (torch): ONNX / TorchScript + ``preprocess.json`` + ``metadata.json``;
* :func:`make_bundle`: exported model + preprocessing + thresholds + gallery in one folder;
* :class:`Recognizer`: embed / identify / verify / enrol with numpy, Pillow and onnxruntime
  only — ``import tripletlab.deploy.recognizer`` does not import torch;
* :class:`GalleryStore`: identities and embeddings in SQLite (WAL), index kept in step.

Names are imported lazily (PEP 562), so using the recognizer never loads torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tripletlab.deploy.bundle import make_bundle
    from tripletlab.deploy.export import export_run
    from tripletlab.deploy.gallery_store import GalleryStore
    from tripletlab.deploy.preprocess import Preprocess
    from tripletlab.deploy.recognizer import Recognizer
    from tripletlab.deploy.run_loading import LoadedRun, load_run

_LAZY = {
    "GalleryStore": "tripletlab.deploy.gallery_store",
    "LoadedRun": "tripletlab.deploy.run_loading",
    "Preprocess": "tripletlab.deploy.preprocess",
    "Recognizer": "tripletlab.deploy.recognizer",
    "export_run": "tripletlab.deploy.export",
    "load_run": "tripletlab.deploy.run_loading",
    "make_bundle": "tripletlab.deploy.bundle",
}

__all__ = [
    "GalleryStore",
    "LoadedRun",
    "Preprocess",
    "Recognizer",
    "export_run",
    "load_run",
    "make_bundle",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'tripletlab.deploy' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
