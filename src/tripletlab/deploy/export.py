"""Export a run's embedder: ONNX or TorchScript, with its preprocessing and metadata.

:func:`export_run` writes into ``out_dir``:

* ``model.onnx`` (``torch.onnx.export`` with the torch.export-based exporter, which needs
  ``onnxscript``) or ``model.pt`` (TorchScript by tracing) — input ``input`` (N, *input_shape)
  float32 with a dynamic batch axis N, output ``embedding`` (N, D), the run's L2
  normalisation included;
* ``preprocess.json`` — :class:`~tripletlab.deploy.preprocess.Preprocess` (image: size,
  resize rule, channel order, scale, mean/std; features: standardisation);
* ``metadata.json`` — embedding dim, metric, normalisation, thresholds, class names, the
  model file's SHA-256 and the versions of python, torch, onnx and tripletlab.

The export is checked before it is declared done: the exported model is run (onnxruntime, or
the loaded TorchScript module) on a random batch and must equal PyTorch within
:data:`PARITY_TOLERANCE`, else :class:`ExportError`.

Example (not run here: an export takes seconds):
    >>> from tripletlab.deploy import export_run, load_run  # doctest: +SKIP
    >>> export_run(load_run("runs/digits-mlp"), "onnx", "exported/")  # doctest: +SKIP
    PosixPath('exported')
"""

from __future__ import annotations

import contextlib
import datetime
import io
import logging
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tripletlab.deploy.files import atomic_write, file_sha256, write_json_atomic
from tripletlab.deploy.run_loading import LoadedRun, load_run
from tripletlab.errors import ConfigError, TripletlabError

__all__ = [
    "EXPORT_FORMAT",
    "FORMATS",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "PARITY_TOLERANCE",
    "ExportError",
    "export_run",
]

EXPORT_FORMAT = "tripletlab-export"
EXPORT_VERSION = 1
FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt"}
INPUT_NAME, OUTPUT_NAME = "input", "embedding"
#: Largest |exported − PyTorch| accepted on the check batch: float32 kernels of two runtimes
#: differ by ~1e-7 relative; 1e-4 catches a wrong graph, not rounding.
PARITY_TOLERANCE = 1e-4
#: The check batch: 3 rows, not 1 or 2, so a batch size baked into the graph is caught.
_CHECK_BATCH = 3


class ExportError(TripletlabError):
    """The model could not be exported, or the export does not reproduce PyTorch."""


def export_run(
    run: LoadedRun | str | Path, format: str = "onnx", out_dir: str | Path = "exported"
) -> Path:
    """Export ``run`` (a :class:`LoadedRun` or a run directory) to ``out_dir`` (see module).

    Returns:
        ``out_dir`` as a Path.

    Raises:
        ConfigError: unknown ``format``.
        ExportError: the exporter failed or the exported model disagrees with PyTorch.
    """
    if format not in FORMATS:
        raise ConfigError(f"export format must be one of {', '.join(FORMATS)}; got {format!r}")
    loaded = run if isinstance(run, LoadedRun) else load_run(run)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = loaded.model.eval()
    example = torch.from_numpy(_check_batch(loaded))
    model_path = out / FORMATS[format]
    with torch.no_grad():
        expected = model(example).numpy()
    if format == "onnx":
        _export_onnx(model, example, model_path)
        got = _run_onnx(model_path, example.numpy())
    else:
        _export_torchscript(model, example, model_path)
        got = torch.jit.load(str(model_path)).eval()(example).detach().numpy()
    gap = float(np.abs(got - expected).max())
    if not gap <= PARITY_TOLERANCE:
        raise ExportError(
            f"the exported {format} model differs from PyTorch by {gap:.3g} "
            f"(> {PARITY_TOLERANCE}); the export is not usable"
        )
    write_json_atomic(out / "preprocess.json", loaded.preprocess.to_dict())
    write_json_atomic(out / "metadata.json", _metadata(loaded, format, model_path, expected, gap))
    return out


def _check_batch(loaded: LoadedRun) -> np.ndarray:
    rng = np.random.default_rng(0)
    shape = (_CHECK_BATCH, *loaded.preprocess.input_shape)
    return rng.standard_normal(shape).astype(np.float32)


def _export_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    try:
        import onnxscript  # noqa: F401  (the exporter needs it; say so before it fails)
    except ImportError:
        raise ExportError(
            "ONNX export needs onnx and onnxscript: pip install 'tripletlab[deploy]'"
        ) from None
    batch = torch.export.Dim("batch", min=1)
    # The exporter narrates its steps on stdout and logs that torchvision's operators are
    # skipped when torchvision is absent (irrelevant to an embedder); a library call stays quiet.
    quiet = io.StringIO()
    registry_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry_log.level
    registry_log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(quiet):
            program = torch.onnx.export(
                model,
                (example,),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},),  # by position: any forward argument name
                dynamo=True,
                verbose=False,
            )
    except Exception as exc:  # the exporter raises many types; the user needs one message
        raise ExportError(f"torch.onnx.export failed: {type(exc).__name__}: {exc}") from exc
    finally:
        registry_log.setLevel(level)
    if program is None:
        raise ExportError("torch.onnx.export returned no program")
    atomic_write(path, lambda handle: handle.write(program.model_proto.SerializeToString()))


def _run_onnx(path: Path, batch: np.ndarray) -> np.ndarray:
    try:
        import onnxruntime
    except ImportError:
        raise ExportError(
            "checking the ONNX export needs onnxruntime: pip install 'tripletlab[deploy]'"
        ) from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0])


def _export_torchscript(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    try:
        traced = torch.jit.trace(model, example, check_trace=False)
    except Exception as exc:
        raise ExportError(f"torch.jit.trace failed: {type(exc).__name__}: {exc}") from exc
    atomic_write(path, lambda handle: torch.jit.save(traced, handle))


def _metadata(
    loaded: LoadedRun, format: str, model_path: Path, sample: np.ndarray, gap: float
) -> dict[str, Any]:
    import tripletlab

    versions = {
        "tripletlab": tripletlab.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if format == "onnx":
        import onnx

        versions["onnx"] = onnx.__version__
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "model_file": model_path.name,
        "model_format": format,
        "model_sha256": file_sha256(model_path),
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "input_shape": list(loaded.preprocess.input_shape),
        "dynamic_axes": {INPUT_NAME: {"0": "batch"}, OUTPUT_NAME: {"0": "batch"}},
        "embedding_dim": int(sample.shape[1]),
        "metric": loaded.metric,
        "normalized": loaded.normalized,
        "thresholds": loaded.thresholds.to_dict(),
        "class_names": loaded.class_names,
        "source": loaded.source,
        # A gallery enrolled through the run itself stays valid for this export (same
        # embeddings within PARITY_TOLERANCE): stores are keyed by this fingerprint.
        "source_fingerprint": loaded.fingerprint,
        "parity_max_abs_diff": gap,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "versions": versions,
    }
