"""load_run and export_run: the loaded run embeds as training did; exports equal PyTorch.

Parity: for each built-in model (mlp, cnn) and a tiny random-weight transformers ResNet
(backbone + pooling + L2; marked slow, run with ``-m slow``), onnxruntime's output equals
PyTorch's within 1e-4 on random and real (digits) inputs, at batch sizes 1 and 7 (the export
is traced at another size, 3).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deploy_helpers import BUNDLE_SHAPE, digit_images, make_run
from tripletlab.deploy.export import PARITY_TOLERANCE, export_run
from tripletlab.deploy.preprocess import Preprocess
from tripletlab.deploy.run_loading import LoadedRun, load_run
from tripletlab.errors import ConfigError

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

BATCHES = (1, 7)
#: The ResNet test model's input: RGB 32×32 (digits are upscaled to it).
RESNET_SHAPE = (3, 32, 32)


class _ResNetEmbedder(torch.nn.Module):
    """A transformers backbone + its pooled output flattened (pooling), as an embedder."""

    def __init__(self, backbone: torch.nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(pixel_values=x).pooler_output.flatten(1)


def _resnet_run(folder) -> LoadedRun:
    transformers = pytest.importorskip("transformers")
    config = transformers.ResNetConfig(
        num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic"
    )
    torch.manual_seed(0)
    transformers.ResNetModel(config).save_pretrained(folder)
    backbone = transformers.ResNetModel.from_pretrained(folder).eval()
    spec = Preprocess.image(3, 32, 32, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    return LoadedRun.from_module(_ResNetEmbedder(backbone), spec, metric="cosine", normalize=True)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """model name → (LoadedRun, onnxruntime session, export folder); one export each."""
    root = tmp_path_factory.mktemp("export")
    runs = {
        "mlp": load_run(make_run(root, "mlp")),
        "cnn": load_run(make_run(root, "cnn")),
        "resnet": _resnet_run(root / "resnet-weights"),
    }
    out = {}
    for name, run in runs.items():
        folder = export_run(run, "onnx", root / f"onnx-{name}")
        session = ort.InferenceSession(
            str(folder / "model.onnx"), providers=["CPUExecutionProvider"]
        )
        out[name] = (run, session, folder)
    return out


def _inputs(run: LoadedRun, kind: str, batch: int) -> np.ndarray:
    if kind == "random":
        rng = np.random.default_rng(batch)
        return rng.standard_normal((batch, *run.preprocess.input_shape)).astype(np.float32)
    # Real inputs: digits images through the run's own preprocessing (resize, RGB, mean/std).
    return run.preprocess(digit_images(batch))


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("kind", ["random", "real"])
@pytest.mark.parametrize(
    "name",
    # The transformers model costs ~15 s (import + export) on a loaded 2-core machine: slow.
    ["mlp", "cnn", pytest.param("resnet", marks=pytest.mark.slow)],
)
def test_onnx_output_equals_pytorch(exported, name, kind, batch):
    run, session, _ = exported[name]
    x = _inputs(run, kind, batch)
    (got,) = session.run(["embedding"], {"input": x})
    with torch.no_grad():
        expected = run.model(torch.from_numpy(x)).numpy()
    assert got.shape == expected.shape == (batch, expected.shape[1])
    np.testing.assert_allclose(got, expected, rtol=0, atol=PARITY_TOLERANCE)
    if name == "resnet":  # the wrapper's L2 is in the graph
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_onnx_graph_has_a_dynamic_batch_axis_and_files(exported):
    import onnx

    run, _, folder = exported["cnn"]
    graph = onnx.load(folder / "model.onnx").graph
    batch_dim = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.HasField("dim_value")
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["embedding_dim"] == 6 and meta["metric"] == "sqeuclidean"
    assert meta["normalized"] is True
    assert meta["thresholds"] == {"verification": 0.3, "identification": 0.3}
    assert {"torch", "onnx", "tripletlab", "python"} <= set(meta["versions"])
    assert meta["parity_max_abs_diff"] <= PARITY_TOLERANCE
    spec = Preprocess.from_dict(json.loads((folder / "preprocess.json").read_text()))
    assert spec == run.preprocess
    assert (spec.kind, spec.input_shape, spec.color_mode, spec.resize) == (
        "image",
        BUNDLE_SHAPE,
        "L",
        "bilinear",
    )


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_torchscript_output_equals_pytorch(tmp_path, name):
    run = load_run(make_run(tmp_path, name))
    folder = export_run(run, "torchscript", tmp_path / "ts")
    scripted = torch.jit.load(str(folder / "model.pt"))
    for batch in BATCHES:
        x = torch.from_numpy(_inputs(run, "real", batch))
        with torch.no_grad():
            np.testing.assert_allclose(scripted(x).numpy(), run.model(x).numpy(), atol=1e-5)
    assert json.loads((folder / "metadata.json").read_text())["model_format"] == "torchscript"


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_loaded_run_embeds_like_the_training_code(tmp_path, name):
    from tripletlab.train.run import embed_run

    run_dir = make_run(tmp_path, name)
    run = load_run(run_dir)
    pixels = np.stack([np.asarray(im, np.float32)[None] / 255 for im in digit_images(5)])
    np.testing.assert_allclose(run.embed(pixels), embed_run(run_dir, pixels), atol=1e-6)
    assert (
        run.threshold == 0.3 and run.metric == "sqeuclidean" and run.config["model"]["name"] == name
    )
    assert run.embedding_dim == 6 and len(run.fingerprint or "") == 64


def test_loaded_run_reads_image_files_as_the_training_reader(tmp_path):
    from tripletlab.train.recognition import read_samples

    run = load_run(make_run(tmp_path, "cnn"))
    path = tmp_path / "face.png"
    digit_images(1)[0].resize((20, 13)).convert("RGB").save(path)  # another size and mode
    expected = run.embed(read_samples(path, BUNDLE_SHAPE))
    np.testing.assert_allclose(run.embed(path), expected, atol=1e-6)
    np.testing.assert_allclose(run.embed([str(path), path]), np.repeat(expected, 2, 0), atol=1e-6)


def test_bad_export_requests_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="format must be one of"):
        export_run(tmp_path, "tflite", tmp_path / "out")
    with pytest.raises(ConfigError, match="no run directory"):
        load_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="is not a run"):
        load_run(tmp_path / "empty")


def test_a_run_served_directly_shares_its_gallery_with_its_export(exported, tmp_path):
    from tripletlab.deploy.recognizer import Recognizer

    run, _, folder = exported["cnn"]
    faces = digit_images(3)
    gallery = tmp_path / "shared.sqlite"
    direct = Recognizer.open(run.source, gallery=gallery)  # the run itself, through PyTorch
    direct.enrol("zero", [faces[0]])
    direct.enrol("one", [faces[1]])
    direct.close()
    onnx_based = Recognizer.open(folder, gallery=gallery)  # same fingerprint: accepted
    answer = onnx_based.identify([faces[1]])[0]
    assert answer.identity == "one" and answer.distance == pytest.approx(0, abs=1e-4)
    assert onnx_based.info.verification_threshold == 0.3
    onnx_based.close()


def test_array_datasets_give_a_feature_preprocess(tmp_path):
    from tripletlab.deploy.run_loading import _preprocess_of

    assert _preprocess_of("data/x.npz", (1, 8, 8), 0.0, 1.0).kind == "features"
    assert _preprocess_of("table.csv", (64,), 0.0, 1.0).kind == "features"
    assert _preprocess_of("faces/", (3, 32, 32), 0.0, 1.0).kind == "image"
    assert _preprocess_of("fashion-mnist", (1, 28, 28), 0.0, 1.0).color_mode == "L"


@pytest.mark.slow
def test_a_trained_run_loads_exports_and_identifies(tmp_path):
    """The whole way on a run that `run_training` really wrote (digits, MLP, 2 epochs)."""
    from tripletlab.deploy.bundle import make_bundle
    from tripletlab.deploy.recognizer import Recognizer
    from tripletlab.pipeline.config import load_config
    from tripletlab.pipeline.training import run_training

    cfg = load_config(
        None,
        {
            "out": str(tmp_path / "run"),
            "train.epochs": 2,
            "report.enabled": False,
            "train.progress": False,
        },
    )
    run_training(cfg)
    run = load_run(tmp_path / "run")
    assert run.threshold is not None and run.preprocess.kind == "image"
    bundle = make_bundle(tmp_path / "run", tmp_path / "bundle")
    rec = Recognizer.open(bundle)
    faces = digit_images(20)
    rec.enrol("first ten", faces[:10])
    assert rec.identify(faces[:3])[0].identity == "first ten"
    np.testing.assert_allclose(rec.embed(faces), run.embed(faces), atol=PARITY_TOLERANCE)
    rec.close()


def test_the_lazy_package_resolves_every_public_name():
    import tripletlab

    # scikit-learn's estimator is left out: its import alone costs seconds.
    for name in set(tripletlab.__all__) - {"TripletEmbedder"}:
        assert getattr(tripletlab, name) is not None, name
    assert tripletlab.MLP.__module__ == "tripletlab.nn.networks"
    assert tripletlab.functional.__name__ == "tripletlab.functional"
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = tripletlab.Nope
