"""Builders shared by the deploy and serve tests: tiny run directories and ONNX bundles.

``make_run`` writes a run directory in the layout ``tripletlab train`` writes (config.json,
metrics.json, checkpoints/final.pt with the checkpoint metadata) from an untrained network,
in well under a second. ``make_onnx_bundle`` writes an exported folder / bundle whose model
(flatten → random linear map → L2) is built with ``onnx.helper`` — no torch — so the store,
recognizer and server tests do not pay for an export.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

BUNDLE_SHAPE = (1, 8, 8)
BUNDLE_DIM = 8
#: Thresholds of the test bundle: random 8×8 noise images land ~1.0 apart after the random
#: projection + L2 (squared distance on the sphere ∈ [0, 4]); an image and itself at 0.
BUNDLE_THRESHOLD = 0.25


def make_run(root: Path, model: str = "mlp", seed: int = 0, threshold: float = 0.3) -> Path:
    """A run directory of an untrained ``model`` ('mlp' or 'cnn') on 1×8×8 digits images."""
    import torch

    from tripletlab.pipeline.config import load_config
    from tripletlab.pipeline.factories import build_network
    from tripletlab.train.checkpoint import save_checkpoint

    run_dir = root / f"run-{model}-{seed}"
    cfg = load_config(
        None,
        {"model.name": model, "model.hidden": [16], "model.embedding_dim": 6, "seed": seed},
    )
    torch.manual_seed(seed)
    network = build_network(model, BUNDLE_SHAPE, 6, [16], "relu", cfg.model.dropout)
    if model == "cnn":  # non-trivial BatchNorm statistics, as after training
        with torch.no_grad():
            network.train()(torch.randn(32, *BUNDLE_SHAPE))
    meta = {
        "run": cfg.to_dict(),
        "in_shape": list(BUNDLE_SHAPE),
        "input_mean": 0.3,
        "input_std": 0.37,
        "class_names": [str(i) for i in range(10)],
    }
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict()))
    (run_dir / "metrics.json").write_text(
        json.dumps({"test": {"verification_threshold": threshold}})
    )
    save_checkpoint(
        run_dir / "checkpoints" / "final.pt", {"model": network.state_dict(), "config": meta}
    )
    return run_dir


def make_onnx_bundle(root: Path, seed: int = 0, threshold: float = BUNDLE_THRESHOLD) -> Path:
    """An exported folder (model.onnx, preprocess.json, metadata.json) built without torch."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    features = int(np.prod(BUNDLE_SHAPE))
    weights = rng.standard_normal((features, BUNDLE_DIM)).astype(np.float32)
    nodes = [
        helper.make_node("Flatten", ["input"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "W"], ["raw"]),
        helper.make_node("ReduceL2", ["raw"], ["norm"], axes=[1], keepdims=1),
        helper.make_node("Max", ["norm", "eps"], ["safe"]),
        helper.make_node("Div", ["raw", "safe"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes,
        "linear-l2",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *BUNDLE_SHAPE])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", BUNDLE_DIM])],
        [
            numpy_helper.from_array(weights, "W"),
            numpy_helper.from_array(np.float32([1e-12]), "eps"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    folder = root / f"bundle-{seed}"
    folder.mkdir(parents=True)
    onnx.save(model, folder / "model.onnx")
    from tripletlab.deploy.files import file_sha256
    from tripletlab.deploy.preprocess import Preprocess

    spec = Preprocess.image(1, 8, 8, (0.3,), (0.37,))
    (folder / "preprocess.json").write_text(json.dumps(spec.to_dict()))
    meta = {
        "format": "tripletlab-export",
        "version": 1,
        "model_file": "model.onnx",
        "model_format": "onnx",
        "model_sha256": file_sha256(folder / "model.onnx"),
        "input_name": "input",
        "output_name": "embedding",
        "input_shape": list(BUNDLE_SHAPE),
        "embedding_dim": BUNDLE_DIM,
        "metric": "sqeuclidean",
        "normalized": True,
        "thresholds": {"verification": threshold, "identification": threshold},
    }
    (folder / "metadata.json").write_text(json.dumps(meta))
    return folder


def noise_png(seed: int, size: tuple[int, int] = (8, 8), mode: str = "L") -> bytes:
    """A PNG of seeded uniform noise (distinct seeds: distinct embeddings)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    channels = 1 if mode == "L" else 3
    pixels = (rng.random((size[1], size[0], channels)) * 255).astype(np.uint8)
    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def digit_images(count: int) -> list:
    """The first ``count`` images of scikit-learn's digits as 8×8 grey Pillow images."""
    from PIL import Image
    from sklearn.datasets import load_digits

    images = load_digits().images[:count] / 16.0
    return [Image.fromarray((im * 255).round().astype(np.uint8), "L") for im in images]
