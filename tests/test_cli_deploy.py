"""``tripletlab export`` and ``tripletlab serve`` from the command line: the files an export
writes, a bundle with an enrolled gallery, one-line errors, and a real server process that
answers ``/health`` and stops on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from deploy_helpers import make_run
from serve_helpers import free_port
from tripletlab.cli import main

pytest.importorskip("onnxruntime")

SERVER_START_SECONDS = 240  # a cold interpreter importing onnxruntime + fastapi on a busy CPU


def _gallery(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for identity in ("alice", "bob"):
        folder = root / identity
        folder.mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 255, (8, 8), dtype=np.uint8)
            Image.fromarray(pixels, mode="L").save(folder / f"{i}.png")
    return root


def test_export_writes_model_preprocessing_and_metadata(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    out = tmp_path / "exported"
    result = CliRunner().invoke(main, ["export", str(run), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert {"model.onnx", "preprocess.json", "metadata.json"} <= {p.name for p in out.iterdir()}
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["embedding_dim"] == 6


def test_export_with_a_gallery_makes_a_bundle_that_identifies(tmp_path: Path) -> None:
    from tripletlab.deploy.recognizer import Recognizer

    run = make_run(tmp_path)
    out = tmp_path / "bundle"
    args = ["export", str(run), "-o", str(out), "--gallery", str(_gallery(tmp_path / "g"))]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    recognizer = Recognizer.open(out)
    try:
        assert sorted(info.identity for info in recognizer.identities()) == ["alice", "bob"]
    finally:
        recognizer.close()


def test_a_torchscript_bundle_is_refused_in_one_line(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    args = ["export", str(run), "-o", str(tmp_path / "o"), "--format", "torchscript"]
    result = CliRunner().invoke(main, [*args, "--gallery", str(_gallery(tmp_path / "g"))])
    assert result.exit_code == 2
    assert "needs --format onnx" in result.output


def test_export_of_a_folder_that_is_not_a_run_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(
        main, ["export", str(tmp_path / "empty"), "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_serve_answers_health_and_stops_on_sigterm(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    port = free_port()
    env = {**os.environ, "TRIPLETLAB_TOKEN": "secret"}
    command = [sys.executable, "-m", "tripletlab.cli", "serve", str(run), "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert health.status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) is not None
