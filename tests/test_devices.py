"""Devices and precision: validated up front, one line when unavailable."""

from __future__ import annotations

import pytest
import torch

from tripletlab.errors import ConfigError, TripletlabError
from tripletlab.train.devices import (
    DeviceError,
    move_model,
    resolve_device,
    resolve_precision,
    use_channels_last,
)


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and torch.backends.mps.is_available():
        expected = "mps"
    assert resolve_device("auto").type == expected


@pytest.mark.skipif(torch.backends.cuda.is_built(), reason="this torch has CUDA support")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_on_a_cpu_only_build_is_one_line(name):
    with pytest.raises(DeviceError, match=r"no CUDA support; install a CUDA build") as caught:
        resolve_device(name)
    assert "\n" not in str(caught.value) and isinstance(caught.value, TripletlabError)


def test_cuda_without_a_visible_gpu_and_out_of_range_index(monkeypatch):
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="no CUDA GPU is visible"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(DeviceError, match=r"'cuda:2' does not exist: this machine has 2"):
        resolve_device("cuda:2")


def test_mps_and_unknown_names(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_built", lambda: False)
    with pytest.raises(DeviceError, match="no MPS support"):
        resolve_device("mps")
    with pytest.raises(ConfigError, match="device must be auto, cpu, cuda, cuda:N or mps"):
        resolve_device("tpu")


def test_precisions():
    cpu = torch.device("cpu")
    assert resolve_precision("32", cpu).dtype is None
    assert resolve_precision(32, cpu).make_scaler() is None
    assert resolve_precision("bf16", cpu).dtype == torch.bfloat16
    half = resolve_precision("16-mixed", cpu)
    assert half.dtype == torch.float16 and isinstance(half.make_scaler(), torch.amp.GradScaler)
    with half.autocast():
        assert torch.nn.Linear(2, 2)(torch.ones(1, 2)).dtype == torch.float16
    with pytest.raises(ConfigError, match="precision must be one of 32, bf16, 16-mixed"):
        resolve_precision("64", cpu)


def test_channels_last_is_for_cnn_maps_on_cuda():
    assert use_channels_last("map", torch.device("cuda"))
    assert not use_channels_last("tokens", torch.device("cuda"))
    assert not use_channels_last("map", torch.device("cpu"))
    model = move_model(torch.nn.Conv2d(3, 4, 3), torch.device("cpu"), channels_last=True)
    assert model.weight.is_contiguous(memory_format=torch.channels_last)


def test_checkpoints_load_onto_the_cpu_with_map_location(tmp_path):
    from tripletlab.train.checkpoint import load_checkpoint, save_checkpoint

    save_checkpoint(tmp_path / "c.pt", {"w": torch.ones(2)})
    assert (
        load_checkpoint(tmp_path / "c.pt", map_location=resolve_device("cpu"))["w"].device.type
        == "cpu"
    )
