"""The benchmark's exports (Fashion-MNIST → Market-1501 and LFW layouts) read back by the
layout readers, on tiny random images."""

from __future__ import annotations

import numpy as np
from benchmarks.protocols_fashion import export_lfw, export_market, read_pixels

from tripletlab.data.layouts import load_layout


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.repeat(np.arange(3), n // 3)


def test_market_export_reads_back_with_identities_cameras_and_pixels(tmp_path):
    images, labels = _images(12)
    train_images, train_labels = _images(6, seed=1)
    export_market(images, labels, train_images, train_labels, tmp_path / "m", 1, seed=0)
    layout = load_layout(f"market1501:{tmp_path / 'm'}")
    q, g = layout.split("query"), layout.split("gallery")
    assert len(q) == 3 and len(g) == 9 and len(layout.split("train")) == 6
    assert sorted(q.labels.tolist()) == [1, 2, 3]  # identity = class + 1
    assert set(np.concatenate([q.cameras, g.cameras]).tolist()) <= {1, 2}
    index = int(q.paths[0].name.split("_")[2])  # the export keeps the source index
    pixels = (read_pixels(q.paths[:1])[0] * 255).round().astype(np.uint8)
    assert np.array_equal(pixels, images[index].reshape(-1))  # PNG: lossless


def test_lfw_export_reads_back_as_ten_folds(tmp_path):
    images, labels = _images(30)
    export_lfw(images, labels, ["T-shirt/top", "Trouser", "Bag"], tmp_path, seed=0, per_kind=2)
    layout = load_layout(f"lfw:{tmp_path}")
    pairs, test = layout.pairs, layout.split("test")
    assert len(pairs) == 40 and pairs.n_folds == 10
    same = test.labels[pairs.first] == test.labels[pairs.second]
    assert same.tolist() == pairs.same.tolist()
    assert "T-shirt_top" in test.class_names.values()
