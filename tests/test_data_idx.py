"""IDX reader/writer and the Fashion-MNIST loader, on tiny files written in tmp_path."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from tripletlab.data import idx, load_dataset, read_idx, write_idx
from tripletlab.errors import DataError


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_write_then_read_round_trips(tmp_path, dtype, suffix):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if dtype == np.uint8:
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / f"a-idx3{suffix}", array)
    back = read_idx(path)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_header_layout_is_the_mnist_format(tmp_path):
    path = write_idx(tmp_path / "l-idx1-ubyte", np.array([3, 1, 4], dtype=np.uint8))
    raw = path.read_bytes()
    assert raw[:4] == bytes([0, 0, 0x08, 1])
    assert raw[4:8] == (3).to_bytes(4, "big") and raw[8:] == bytes([3, 1, 4])


def test_truncated_and_bad_files_are_named(tmp_path):
    path = write_idx(tmp_path / "x-idx2-ubyte", np.ones((4, 4), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match=r"x-idx2-ubyte.*truncated"):
        read_idx(path)
    (tmp_path / "junk").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "junk")
    (tmp_path / "code").write_bytes(bytes([0, 0, 0x07, 1, 0, 0, 0, 0]))
    with pytest.raises(DataError, match="unknown IDX type code 0x07"):
        read_idx(tmp_path / "code")
    with pytest.raises(DataError, match="not found"):
        read_idx(tmp_path / "missing")
    (tmp_path / "bad.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "bad.gz")


def _fake_fashion(folder, n_train=30, n_test=10, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(
            folder / f"{prefix}-images-idx3-ubyte{suffix}",
            rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        )
        write_idx(
            folder / f"{prefix}-labels-idx1-ubyte{suffix}", (np.arange(n) % 10).astype(np.uint8)
        )
    return folder


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_data_dir(tmp_path, gz):
    folder = _fake_fashion(tmp_path / "fm", gz=gz)
    ds = load_dataset("fashion-mnist", data_dir=folder)
    assert ds.features.shape == (40, 1, 28, 28) and ds.features.dtype == torch.float32
    assert float(ds.features.min()) >= 0 and float(ds.features.max()) <= 1
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    assert int(ds.official_test.sum()) == 10 and bool(ds.official_test[30:].all())
    raw = read_idx(folder / f"train-images-idx3-ubyte{'.gz' if gz else ''}")
    np.testing.assert_allclose(ds.features[0, 0].numpy(), raw[0] / 255.0, rtol=1e-6)
    flat = load_dataset("fashion-mnist", data_dir=folder, flatten=True)
    assert flat.features.shape == (40, 784)


def test_missing_fashion_mnist_names_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setattr(idx, "FASHION_MNIST_DIRS", (tmp_path / "nowhere",))
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        load_dataset("fashion-mnist")
    with pytest.raises(DataError, match="no Fashion-MNIST files in"):
        load_dataset("fashion-mnist", data_dir=tmp_path)


def test_mismatched_idx_pair_lengths(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((5, 2, 2), dtype=np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, dtype=np.uint8))
    with pytest.raises(DataError, match=r"5 images but .* 4 labels"):
        load_dataset(tmp_path)


def test_an_idx_folder_path_is_loaded(tmp_path):
    _fake_fashion(tmp_path, n_train=20, n_test=0, gz=False)
    for p in tmp_path.glob("t10k*"):
        p.unlink()
    ds = load_dataset(tmp_path)
    assert len(ds) == 20 and ds.official_test is None and ds.class_names[:2] == ["0", "1"]


def test_gzip_members_are_read_transparently(tmp_path):
    data = bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 9])
    with gzip.open(tmp_path / "v-idx1-ubyte.gz", "wb") as handle:
        handle.write(data)
    assert read_idx(tmp_path / "v-idx1-ubyte.gz").tolist() == [7, 9]


def test_installed_fashion_mnist_when_present():
    if not idx.find_idx_pairs(idx.FASHION_MNIST_DIRS[0]):
        pytest.skip("Debian package dataset-fashion-mnist not installed")
    folder = idx.fashion_mnist_dir()
    assert {"train", "t10k"} <= set(idx.find_idx_pairs(folder))
