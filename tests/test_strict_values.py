"""Issue 9, group 4: invalid values never pass silently.

Strict config types (no bool for int) and finite numbers; NaN, empty and infinite labels
refused by every loader that reads labels as text or numbers (file and row named); ``embed``
refuses NaN/Inf inputs, writes (0, D) for no samples and exactly the path it was given;
``search`` and ``verify`` with an empty query file are one line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tiny_run import tiny_cli_args
from tripletlab.cli import main
from tripletlab.data.arrays import load_csv, load_npz
from tripletlab.errors import ConfigError, DataError
from tripletlab.pipeline.config import load_config, read_config_file
from tripletlab.pipeline.identification import ids_path_of


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ("[train]\nepochs = true", "config key 'train.epochs': expected an integer, got True"),
        ("[train]\nepochs = 2.0", "config key 'train.epochs': expected an integer"),
        ("[optim]\nlr = inf", "config key 'optim.lr': Input should be a finite number"),
        ("[loss]\nmargin = nan", "config key 'loss.margin': Input should be a finite number"),
        ("[optim]\nlr = true", "config key 'optim.lr': expected a number"),
        ("[model]\nnormalize = 1", "config key 'model.normalize': expected a boolean"),
    ],
)
def test_config_types_are_strict_and_numbers_finite(tmp_path: Path, toml: str, named: str) -> None:
    path = tmp_path / "run.toml"
    path.write_text(toml + "\n")
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace(")", r"\)")):
        load_config(path)


def test_yaml_numbers_written_as_text_still_read_for_float_keys(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  lr: 1e-3\n")  # YAML 1.1 reads this as the string "1e-3"
    assert read_config_file(path)["optim"]["lr"] == "1e-3"
    assert load_config(path).optim.lr == 1e-3


@pytest.mark.parametrize("label", ["nan", "", "inf", "-Infinity", " NaN "])
def test_csv_labels_that_are_not_classes_are_refused_with_file_and_line(
    tmp_path: Path, label: str
) -> None:
    path = tmp_path / "d.csv"
    path.write_text(f"a,b,label\n1,2,x\n3,4,{label}\n5,6,y\n")
    with pytest.raises(DataError, match=r"d.csv, line 3, column 'label': label"):
        load_csv(path)


def test_npz_text_labels_that_are_not_classes_are_refused_with_the_sample(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, features=np.zeros((3, 2)), labels=np.array(["a", "nan", "b"]))
    with pytest.raises(DataError, match="sample 1 has label 'nan'"):
        load_npz(path)
    np.savez(path, features=np.zeros((3, 2)), labels=np.array([0.0, np.inf, 1.0]))
    with pytest.raises(DataError, match=r"NaN or Inf \(first in sample 1\)"):
        load_npz(path)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("strict")
    result = CliRunner().invoke(main, tiny_cli_args(folder))
    assert result.exit_code == 0, result.output
    return folder / "run"


def test_embed_writes_exactly_the_path_given_and_prints_it(run_dir: Path, tmp_path: Path) -> None:
    samples = tmp_path / "x.npy"
    np.save(samples, np.ones((3, 4), dtype=np.float32))
    output = tmp_path / "x.txt"
    result = CliRunner().invoke(main, ["embed", str(run_dir), str(samples), "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert f"to {output}" in result.output
    ids = ids_path_of(output).name  # the row ids beside the embeddings (issue 13)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["x.npy", "x.txt", ids])
    assert np.load(output).shape == (3, 3)


def test_embed_of_no_samples_writes_zero_rows_of_the_embedding_dimension(
    run_dir: Path, tmp_path: Path
) -> None:
    samples = tmp_path / "none.npy"
    np.save(samples, np.zeros((0, 4), dtype=np.float32))
    output = tmp_path / "e.npy"
    result = CliRunner().invoke(main, ["embed", str(run_dir), str(samples), "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert np.load(output).shape == (0, 3)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_embed_refuses_nan_and_inf_inputs(run_dir: Path, tmp_path: Path, bad: float) -> None:
    samples = tmp_path / "bad.npy"
    x = np.ones((3, 4), dtype=np.float32)
    x[2, 1] = bad
    np.save(samples, x)
    output = tmp_path / "e.npy"
    result = CliRunner().invoke(main, ["embed", str(run_dir), str(samples), "-o", str(output)])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: input samples contain NaN or Inf (1 samples, first sample 2); their "
        "embeddings would be meaningless"
    )
    assert not output.exists()


def test_search_and_verify_with_an_empty_query_file_are_one_line(
    run_dir: Path, tmp_path: Path
) -> None:
    gallery = run_dir.parent / "tiny.npz"
    index = tmp_path / "gallery.idx"
    assert CliRunner().invoke(main, ["index", str(run_dir), "--data", str(gallery), "-o",
                                     str(index)]).exit_code == 0  # fmt: skip
    one = tmp_path / "one.npy"
    np.save(one, np.ones((1, 4), dtype=np.float32))
    for empty_shape in [(0,), (0, 4)]:
        empty = tmp_path / "empty.npy"
        np.save(empty, np.zeros(empty_shape, dtype=np.float32))
        for args in (["search", str(index), str(empty)], ["verify", str(run_dir), str(one),
                                                           str(empty)]):  # fmt: skip
            result = CliRunner().invoke(main, args)
            assert result.exit_code == 2, result.output
            assert result.output.strip() == f"error: {empty}: holds no samples to embed"
