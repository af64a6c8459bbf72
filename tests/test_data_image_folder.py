"""Image folders: classes from sub-folders, common mode and size, unreadable files by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tripletlab.data import load_dataset, load_image_folder
from tripletlab.errors import DataError


def _image(path, size=(6, 4), mode="L", value=None, seed=0):
    rng = np.random.default_rng(seed)
    width, height = size
    shape = (height, width) if mode == "L" else (height, width, 3)
    pixels = (
        np.full(shape, value, np.uint8)
        if value is not None
        else rng.integers(0, 256, shape, dtype=np.uint8)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode=mode).save(path)
    return pixels


def test_classes_labels_and_pixels(tmp_path):
    a = _image(tmp_path / "alice" / "1.png", value=255)
    _image(tmp_path / "alice" / "2.png", value=0)
    _image(tmp_path / "bob" / "x.bmp", value=51)
    ds = load_dataset(tmp_path)
    assert ds.class_names == ["alice", "bob"]
    assert ds.labels.tolist() == [0, 0, 1]
    assert ds.features.shape == (3, 1, 4, 6) and ds.features.dtype == torch.float32
    assert torch.equal(ds.features[0, 0], torch.from_numpy(a / 255.0).float())
    assert float(ds.features[2].max()) == pytest.approx(0.2)
    assert ds.warnings == []


def test_mixed_modes_and_sizes_become_rgb_of_the_common_size(tmp_path):
    for i in range(3):
        _image(tmp_path / "a" / f"{i}.png", size=(8, 5), seed=i)
    _image(tmp_path / "b" / "big.png", size=(16, 10), mode="RGB")
    _image(tmp_path / "b" / "small.jpg", size=(8, 5), mode="RGB")
    ds = load_image_folder(tmp_path)
    assert ds.features.shape == (5, 3, 5, 8)
    sized = load_image_folder(tmp_path, image_size=7, flatten=True)
    assert sized.features.shape == (5, 3 * 7 * 7)


@pytest.mark.filterwarnings("ignore:.*without an image suffix")
def test_unreadable_files_are_named_and_skipped_or_refused(tmp_path):
    for c in "ab":
        for i in range(2):
            _image(tmp_path / c / f"{i}.png", seed=i)
    (tmp_path / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "a" / "notes.txt").write_text("ignored")
    with pytest.warns(UserWarning, match="broken.png"):
        ds = load_image_folder(tmp_path)
    assert len(ds) == 4
    assert any("b/broken.png" in w for w in ds.warnings)
    assert any("ignored 1 file" in w for w in ds.warnings)
    with pytest.raises(DataError, match=r"1 unreadable file\(s\).*broken.png"):
        load_image_folder(tmp_path, on_unreadable="error")


def test_a_class_without_readable_images_is_dropped_with_a_warning(tmp_path):
    for c in "abc":
        _image(tmp_path / c / "0.png")
    (tmp_path / "c" / "0.png").write_bytes(b"garbage")
    with pytest.warns(UserWarning):
        ds = load_image_folder(tmp_path)
    assert ds.class_names == ["a", "b"]
    assert any("class 'c'" in w for w in ds.warnings)


def test_empty_and_single_class_folders_are_refused(tmp_path):
    with pytest.raises(DataError, match="no class sub-folders"):
        load_dataset(tmp_path)
    (tmp_path / "only").mkdir()
    with pytest.raises(DataError, match="no readable image"):
        load_dataset(tmp_path)
    _image(tmp_path / "only" / "1.png")
    _image(tmp_path / "only" / "2.png")
    with pytest.raises(DataError, match=r"only one class \('only'\)"):
        load_dataset(tmp_path)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="on_unreadable"):
        load_image_folder(tmp_path, on_unreadable="ignore")
    with pytest.raises(DataError, match="not found"):
        load_image_folder(tmp_path / "missing")
