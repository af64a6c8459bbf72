"""The run config: defaults, TOML/YAML files, flag overrides, errors naming key and type."""

from __future__ import annotations

from pathlib import Path

import pytest

from tripletlab.errors import ConfigError
from tripletlab.pipeline.config import RunConfig, config_from_dict, load_config, read_config_file


def test_defaults_are_valid_and_point_at_runs_name() -> None:
    cfg = load_config()
    assert cfg == RunConfig()
    assert cfg.data.dataset == "digits"
    assert cfg.model.name == "mlp"
    assert cfg.loss.name == "batch-all"
    # unnamed: the pipeline names the run dataset-model-loss-time (see test_cli_train_wiring)
    assert cfg.name is None and cfg.out_dir == Path("runs") / "run"


def test_toml_file_then_flags_win(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text(
        'name = "exp"\n[loss]\nmargin = 0.5\nname = "batch-hard"\n[train]\nepochs = 7\n'
    )
    cfg = load_config(path, {"loss.margin": 0.05, "train.epochs": None})
    assert cfg.name == "exp"
    assert cfg.loss.name == "batch-hard"
    assert cfg.loss.margin == 0.05  # the flag wins
    assert cfg.train.epochs == 7  # an unset flag (None) leaves the file's value


def test_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  embedding_dim: 8\n  hidden: [16, 16]\noptim:\n  name: sgd\n")
    cfg = load_config(path)
    assert cfg.model.embedding_dim == 8
    assert cfg.model.hidden == [16, 16]
    assert cfg.optim.name == "sgd"


def test_round_trip_through_dict() -> None:
    cfg = load_config(None, {"seed": 3, "loss.smoothing": 0.5})
    assert config_from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("values", "fragments"),
    [
        ({"train": {"epochs": "ten"}}, ["'train.epochs'", "integer", "'ten'"]),
        ({"loss": {"margin": "wide"}}, ["'loss.margin'", "number"]),
        ({"report": {"enabled": "maybe"}}, ["'report.enabled'", "boolean"]),
        ({"model": {"hidden": "wide"}}, ["'model.hidden'", "list"]),
        ({"loss": {"name": "hinge"}}, ["'loss.name'", "batch-all", "'hinge'"]),
        ({"optim": {"lr": -1.0}}, ["'optim.lr'", "greater than 0"]),
        ({"trian": {"epochs": 2}}, ["'trian'", "unknown key"]),
        ({"train": 3}, ["'train'", "table"]),
    ],
)
def test_invalid_values_name_key_and_expected_type(values: dict, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(values)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        read_config_file(tmp_path / "missing.toml")
    ini = tmp_path / "run.ini"
    ini.write_text("x=1")
    with pytest.raises(ConfigError, match=r"expected \.toml"):
        read_config_file(ini)
    broken = tmp_path / "broken.toml"
    broken.write_text("[loss\nmargin = ")
    with pytest.raises(ConfigError, match="cannot be parsed"):
        read_config_file(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level"):
        read_config_file(listed)
