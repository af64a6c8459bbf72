"""The user's own arrays: .npz, .npy pairs and CSV files, and the bundled digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tripletlab.data import EmbeddingDataset, encode_labels, load_dataset
from tripletlab.errors import DataError


def test_npz_with_features_and_labels(tmp_path):
    x = np.arange(12, dtype=np.float64).reshape(6, 2)
    np.savez(tmp_path / "d.npz", features=x, labels=np.array([5, 5, 7, 7, 9, 9]))
    ds = load_dataset(tmp_path / "d.npz")
    assert ds.features.dtype == torch.float32 and torch.equal(
        ds.features, torch.from_numpy(x).float()
    )
    assert ds.labels.tolist() == [0, 0, 1, 1, 2, 2] and ds.class_names == ["5", "7", "9"]
    np.savez(tmp_path / "xy.npz", x=x, y=np.array(list("aabbcc")))
    assert load_dataset(tmp_path / "xy.npz").class_names == ["a", "b", "c"]


def test_npz_without_the_arrays_lists_what_it_found(tmp_path):
    np.savez(tmp_path / "d.npz", emb=np.zeros((2, 2)), target=np.zeros(2))
    with pytest.raises(DataError, match="found: emb, target"):
        load_dataset(tmp_path / "d.npz")


def test_mismatched_lengths_are_refused(tmp_path):
    np.savez(tmp_path / "d.npz", features=np.zeros((5, 2)), labels=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match=r"different lengths \(5 rows of features, 4 labels\)"):
        load_dataset(tmp_path / "d.npz")
    np.save(tmp_path / "f.npy", np.zeros((3, 2)))
    np.save(tmp_path / "f_labels.npy", np.array([0, 1]))
    with pytest.raises(DataError, match="different lengths"):
        load_dataset(tmp_path / "f.npy")


def test_npy_pair_found_beside_the_features_or_given(tmp_path):
    np.save(tmp_path / "f.npy", np.eye(4))
    with pytest.raises(DataError, match="no labels for"):
        load_dataset(tmp_path / "f.npy")
    np.save(tmp_path / "labels.npy", np.array([1, 1, 2, 2]))
    assert load_dataset(tmp_path / "f.npy").labels.tolist() == [0, 0, 1, 1]
    np.save(tmp_path / "other.npy", np.array([0, 1, 0, 1]))
    assert load_dataset(tmp_path / "f.npy", labels=tmp_path / "other.npy").labels.tolist() == [
        0,
        1,
        0,
        1,
    ]


def test_nan_features_and_non_numeric_arrays_are_refused(tmp_path):
    np.savez(tmp_path / "nan.npz", features=np.array([[0.0], [np.nan]]), labels=np.array([0, 1]))
    with pytest.raises(DataError, match=r"NaN or Inf \(first in sample 1\)"):
        load_dataset(tmp_path / "nan.npz")
    np.savez(tmp_path / "str.npz", features=np.array([["a"], ["b"]]), labels=np.array([0, 1]))
    with pytest.raises(DataError, match="must be numeric"):
        load_dataset(tmp_path / "str.npz")


def test_csv_with_a_label_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,species,b\n1.5,cat,2\n3,dog,4\n5,cat,6\n\n7,dog,8\n")
    ds = load_dataset(path, label_column="species")
    assert ds.class_names == ["cat", "dog"] and ds.labels.tolist() == [0, 1, 0, 1]
    assert ds.features.tolist() == [[1.5, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]
    assert load_dataset(path, label_column=1).labels.tolist() == [0, 1, 0, 1]


def test_csv_errors_name_the_column_and_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("x,label\n1,0\n2,1\n")
    assert load_dataset(path).labels.tolist() == [0, 1]  # default column "label"
    with pytest.raises(DataError, match=r"no column 'kind'.*columns are: x, label"):
        load_dataset(path, label_column="kind")
    path.write_text("x,label\n1,0\noops,1\n")
    with pytest.raises(DataError, match=r"line 3, column 'x': 'oops' is not a number"):
        load_dataset(path)
    path.write_text("x,label\n1,0\n2\n")
    with pytest.raises(DataError, match="line 3: 1 fields"):
        load_dataset(path)
    path.write_text("x,label\n")
    with pytest.raises(DataError, match="at least one data row"):
        load_dataset(path)


def test_one_class_and_unknown_inputs(tmp_path):
    np.savez(tmp_path / "one.npz", features=np.zeros((3, 2)), labels=np.zeros(3))
    with pytest.raises(DataError, match=r"only one class \('0'\)"):
        load_dataset(tmp_path / "one.npz")
    with pytest.raises(DataError, match="neither a built-in dataset"):
        load_dataset("no-such-dataset")
    (tmp_path / "x.parquet").write_text("")
    with pytest.raises(DataError, match=r"expected a folder, or a \.npz"):
        load_dataset(tmp_path / "x.parquet")


def test_digits_are_bundled_and_scaled():
    ds = load_dataset("digits")
    assert ds.features.shape == (1797, 1, 8, 8) and ds.n_classes == 10
    assert float(ds.features.min()) == 0.0 and float(ds.features.max()) == 1.0
    flat = load_dataset("digits", flatten=True)
    assert torch.equal(flat.features, ds.features.reshape(1797, 64))
    assert torch.bincount(ds.labels).min() >= 170


def test_dataset_container_behaviour():
    ds = EmbeddingDataset(
        torch.arange(8.0).reshape(4, 2), torch.tensor([0, 1, 0, 1]), ["a", "b"], "toy"
    )
    x, y = ds[1]
    assert x.tolist() == [2.0, 3.0] and int(y) == 1
    sub = ds.subset([3, 0])
    assert sub.labels.tolist() == [1, 0] and sub.class_names == ["a", "b"]
    assert "toy: 4 samples of shape (2,), 2 classes" in ds.describe()
    with pytest.raises(DataError, match="different lengths"):
        EmbeddingDataset(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long), ["a"], "bad")
    with pytest.raises(DataError, match=r"labels must lie in 0\.\.0"):
        EmbeddingDataset(torch.zeros(2, 2), torch.tensor([0, 1]), ["a"], "bad")


def test_encode_labels_orders_values_and_keeps_integer_floats_as_integers():
    codes, names = encode_labels(np.array([3.0, 1.0, 3.0]))
    assert codes.tolist() == [1, 0, 1] and names == ["1", "3"]
    with pytest.raises(DataError, match="NaN"):
        encode_labels(np.array([1.0, np.nan]))
