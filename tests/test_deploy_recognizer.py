"""The torch-free recognizer and bundles: identify (with ``unknown``), verify, enrol,
preprocessing of untrusted images, and no torch import anywhere on that path."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from deploy_helpers import BUNDLE_THRESHOLD, make_onnx_bundle, noise_png
from tripletlab.deploy.bundle import make_bundle
from tripletlab.deploy.images import ImageError, open_image
from tripletlab.deploy.preprocess import Preprocess
from tripletlab.deploy.recognizer import UNKNOWN, Recognizer
from tripletlab.errors import ConfigError, DataError

pytest.importorskip("onnxruntime")


@pytest.fixture
def recognizer(tmp_path):
    rec = Recognizer.open(make_onnx_bundle(tmp_path))
    yield rec
    rec.close()


def test_identify_verify_enrol_remove(recognizer):
    assert recognizer.identify([noise_png(1)])[0].identity == UNKNOWN  # empty gallery
    recognizer.enrol("alice", [noise_png(1), noise_png(2)])
    recognizer.enrol("bob", [noise_png(3)])
    known, stranger = recognizer.identify([noise_png(2), noise_png(99)], top_k=5)
    assert known.identity == "alice" and known.distance == pytest.approx(0, abs=1e-5)
    assert [m.identity for m in known.matches] == ["alice", "bob"]
    assert stranger.identity == UNKNOWN and stranger.distance > BUNDLE_THRESHOLD
    assert stranger.matches  # the nearest are still listed
    same = recognizer.verify(noise_png(5), noise_png(5))
    other = recognizer.verify(noise_png(5), noise_png(6))
    assert same.same and same.distance == pytest.approx(0, abs=1e-5)
    assert not other.same and other.threshold == BUNDLE_THRESHOLD
    assert {i.identity: i.images for i in recognizer.identities()} == {"alice": 2, "bob": 1}
    assert recognizer.store.thumbnail(1)[:4] == b"\x89PNG"
    assert recognizer.remove("alice") == 2
    assert recognizer.identify([noise_png(2)])[0].identity == UNKNOWN


def test_bundle_from_an_export_enrols_a_gallery_folder(tmp_path):
    exported = make_onnx_bundle(tmp_path)
    gallery = tmp_path / "people"
    for person, seeds in {"ann": (1, 2), "ben": (3,)}.items():
        (gallery / person).mkdir(parents=True)
        for seed in seeds:
            (gallery / person / f"{seed}.png").write_bytes(noise_png(seed))
    (gallery / "ben" / "notes.txt").write_text("ignored")
    bundle = make_bundle(
        exported, tmp_path / "bundle", gallery=gallery, identification_threshold=0.1
    )
    assert json.loads((bundle / "thresholds.json").read_text()) == {
        "verification": BUNDLE_THRESHOLD,
        "identification": 0.1,
    }
    rec = Recognizer.open(bundle)
    assert rec.info.identification_threshold == 0.1
    assert rec.identify([noise_png(3)])[0].identity == "ben"
    assert {i.identity: i.images for i in rec.identities()} == {"ann": 2, "ben": 1}
    rec.close()


def test_the_recognizer_never_imports_torch(tmp_path):
    bundle = make_onnx_bundle(tmp_path)
    (tmp_path / "face.png").write_bytes(noise_png(4))
    script = textwrap.dedent(
        f"""
        import sys
        import tripletlab.deploy.recognizer as r
        rec = r.Recognizer.open({str(bundle)!r})
        rec.enrol("x", [{str(tmp_path / "face.png")!r}])
        assert rec.identify([{str(tmp_path / "face.png")!r}])[0].identity == "x"
        rec.verify({str(tmp_path / "face.png")!r}, {str(tmp_path / "face.png")!r})
        heavy = sorted(m for m in ("torch", "sklearn", "scipy", "transformers") if m in sys.modules)
        print("heavy:", heavy)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "heavy: []" in out.stdout


def test_decompression_bombs_and_bad_files_are_refused(tmp_path):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (5000, 5000)).save(buffer, format="PNG")  # 25 M pixels in ~25 kB
    bomb = buffer.getvalue()
    assert len(bomb) < 100_000
    with pytest.raises(ImageError, match="decompression bomb"):
        open_image(bomb, max_pixels=1_000_000)
    with pytest.raises(ImageError, match="cannot read the image"):
        open_image(b"GIF89a-truncated")
    with pytest.raises(ImageError, match="no such file"):
        open_image(tmp_path / "missing.png")
    spec = Preprocess.image(1, 8, 8, (0.0,), (1.0,))
    with pytest.raises(DataError, match="does not fit"):
        spec(np.zeros((3, 5)))
    with pytest.raises(DataError, match="feature vectors"):
        Preprocess("features", (64,))(Image.new("L", (8, 8)))
    with pytest.raises(DataError, match="NaN"):
        spec(np.full((1, 8, 8), np.nan))


def test_preprocess_images_rgb_per_channel_and_npy(tmp_path):
    from PIL import Image

    spec = Preprocess.image(3, 2, 4, (0.5, 0.0, 0.0), (0.5, 1.0, 2.0))
    image = Image.new("RGB", (8, 4), (255, 0, 255))  # resized to 4×2, channels R, G, B
    out = spec(image)
    assert out.shape == (1, 3, 2, 4)
    np.testing.assert_allclose(out[0, :, 0, 0], [1.0, 0.0, 0.5])
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((2, 3, 2, 4), np.float32))
    assert spec(buffer.getvalue()).shape == (2, 3, 2, 4)
    assert Preprocess.from_dict(spec.to_dict()) == spec
    with pytest.raises(ConfigError, match="not a tripletlab-preprocess"):
        Preprocess.from_dict({"format": "other"})


def test_a_folder_that_is_neither_export_nor_run_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="neither an exported model"):
        Recognizer.open(tmp_path)


def test_import_tripletlab_loads_no_torch():
    script = textwrap.dedent(
        """
        import sys
        import tripletlab
        assert "torch" not in sys.modules, "import tripletlab loaded torch"
        assert set(tripletlab.__all__) <= set(dir(tripletlab))
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok"]
