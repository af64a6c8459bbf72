"""``kill -9`` of a real server process (uvicorn) in the middle of a stream of HTTP
enrolments: after a restart every acknowledged (201) enrolment is there, with its images,
and the search index agrees with the table."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from deploy_helpers import make_onnx_bundle, noise_png
from serve_helpers import START_TIMEOUT_S, free_port

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from tripletlab.deploy.gallery_store import GalleryStore  # noqa: E402

TOKEN = "kill-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _start(bundle, port: int, token_file) -> subprocess.Popen:
    code = (
        "from tripletlab.serve.main import serve_main; "
        f"serve_main({str(bundle)!r}, port={port}, token_file={str(token_file)!r}, "
        "log_level='warning')"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the server did not start")


# Two server start-ups (~3 s of imports each on a loaded 2-core machine): slow. The store-level
# kill test (tests/test_deploy_store.py) covers the same property in the default suite.
@pytest.mark.slow
def test_acknowledged_http_enrolments_survive_kill_9(tmp_path):
    bundle = make_onnx_bundle(tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    port = free_port()
    server = _start(bundle, port, token_file)
    rng = random.Random(14)  # deterministic kill point (in acknowledgements)
    kill_after = rng.randint(3, 12)
    acked: dict[str, int] = {}
    killer_ready = threading.Event()

    def kill_soon() -> None:
        killer_ready.wait(60)
        time.sleep(rng.uniform(0, 0.05))  # land inside the following request
        os.kill(server.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_soon)
    killer.start()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        for i in range(500):
            files = [
                ("files", (f"{i}-{k}.png", noise_png(1000 * i + k), "image/png")) for k in (0, 1)
            ]
            try:
                response = client.post(
                    "/identities", data={"identity": f"p{i}"}, files=files, headers=AUTH
                )
            except httpx.TransportError:
                break  # the server is gone: this one was never acknowledged
            assert response.status_code == 201, response.text
            acked[f"p{i}"] = i
            if len(acked) == kill_after:
                killer_ready.set()
    killer.join()
    server.wait(10)
    assert server.returncode == -signal.SIGKILL and len(acked) >= kill_after

    restarted = _start(bundle, port, token_file)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            listed = {
                i["identity"]: i["images"] for i in client.get("/identities").json()["identities"]
            }
            assert set(acked) <= set(listed) and set(listed.values()) == {2}
            for name, i in acked.items():
                answer = client.post(
                    "/identify", files=[("files", ("q.png", noise_png(1000 * i + 1), "image/png"))]
                )
                assert answer.json()["results"][0]["identity"] == name
    finally:
        restarted.kill()
        restarted.wait(10)
    with GalleryStore(bundle / "gallery.sqlite") as store:
        store.check_index()
        assert store.counts()["identities"] == len(listed)
