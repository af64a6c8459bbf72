"""Load test of the recognizer service: identify against a 10k-image gallery on the loopback.

Setup: an untrained ConvNet run (1×28×28 inputs, 64-d L2-normalised embeddings; weights do
not change the cost) is exported to ONNX through ``export_run`` and bundled; the gallery
holds ``--gallery`` images (Fashion-MNIST when its files are installed, else seeded noise),
10 per identity, enrolled through the gallery store. The server (``serve_main``: uvicorn,
one process) runs in a subprocess; ``--clients`` client threads (one httpx connection each)
send ``POST /identify`` (one 28×28 PNG, top_k = 5) back to back for ``--seconds``.

Reported: requests/s, latency p50 / p99 / max, errors; and, as the floor, the in-process
``Recognizer.identify`` latency of one query (no HTTP), so the HTTP overhead is a ratio.
Clients and server share the machine's cores: the numbers are for one box, not a cluster.

Usage: ``flock /tmp/tripletlab-bench.lock python benchmarks/serve.py [--seconds 30]``.
Writes ``benchmarks/results/serve.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
IMAGE_SHAPE = (1, 28, 28)
PER_IDENTITY = 10


def _images(n: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """(n, 28, 28) uint8 images: Fashion-MNIST if installed, else seeded noise."""
    try:
        from tripletlab.data import load_dataset

        features = load_dataset("fashion-mnist").features[:n].numpy()
        return (features.reshape(-1, 28, 28) * 255).round().astype(np.uint8), "fashion-mnist"
    except Exception as exc:  # the dataset is optional on a machine
        print(f"fashion-mnist not available ({exc}); seeded noise images instead")
        rng = np.random.default_rng(seed)
        return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), "noise"


def _bundle(folder: Path) -> Path:
    import torch

    from tripletlab.deploy.bundle import make_bundle
    from tripletlab.deploy.export import export_run
    from tripletlab.deploy.preprocess import Preprocess
    from tripletlab.deploy.run_loading import LoadedRun
    from tripletlab.nn.networks import build_model

    torch.manual_seed(0)
    network = build_model("cnn", IMAGE_SHAPE, 64).eval()
    run = LoadedRun.from_module(
        network, Preprocess.image(1, 28, 28, (0.286,), (0.353,)), normalize=True
    )
    return make_bundle(export_run(run, "onnx", folder / "exported"), folder / "bundle")


def _enrol(bundle: Path, images: np.ndarray) -> None:
    from tripletlab.deploy.recognizer import Recognizer

    recognizer = Recognizer.open(bundle)
    embeddings = recognizer.embed(images[:, None].astype(np.float32) / 255.0)
    for start in range(0, len(images), PER_IDENTITY):
        recognizer.store.enrol(
            f"id{start // PER_IDENTITY:05d}", embeddings[start : start + PER_IDENTITY]
        )
    recognizer.close()


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image, "L").save(buffer, format="PNG")
    return buffer.getvalue()


def _floor_ms(bundle: Path, queries: list[bytes], repeats: int = 200) -> float:
    from tripletlab.deploy.recognizer import Recognizer

    recognizer = Recognizer.open(bundle)
    times = []
    for i in range(repeats):
        started = time.perf_counter()
        recognizer.identify([queries[i % len(queries)]], 5)
        times.append(time.perf_counter() - started)
    recognizer.close()
    return float(np.median(times) * 1000)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(bundle: Path, port: int, threads: int | None) -> subprocess.Popen:
    import httpx

    code = (
        "from tripletlab.serve.main import serve_main; "
        f"serve_main({str(bundle)!r}, port={port}, threads={threads}, log_level='warning')"
    )
    process = subprocess.Popen([sys.executable, "-c", code])
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the server did not start")


def _load(url: str, queries: list[bytes], clients: int, seconds: float) -> dict:
    import httpx

    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start_gate = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(index: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            start_gate.wait()
            i = index
            while time.perf_counter() < stop_at[0]:
                body = queries[i % len(queries)]
                i += clients
                started = time.perf_counter()
                response = http.post(
                    "/identify",
                    files=[("files", ("q.png", body, "image/png"))],
                    data={"top_k": "5"},
                )
                latencies[index].append(time.perf_counter() - started)
                if response.status_code != 200:
                    errors[index] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    start_gate.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    flat = np.array([t for per in latencies for t in per]) * 1000
    return {
        "requests": len(flat),
        "errors": int(sum(errors)),
        "seconds": elapsed,
        "requests_per_s": len(flat) / elapsed,
        "p50_ms": float(np.percentile(flat, 50)),
        "p99_ms": float(np.percentile(flat, 99)),
        "max_ms": float(flat.max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--gallery", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads")
    parser.add_argument("--out", type=Path, default=RESULTS / "serve.json")
    args = parser.parse_args()
    images, source = _images(args.gallery + 100)
    gallery, query_images = images[: args.gallery], images[args.gallery :]
    queries = [_png(im) for im in query_images]
    with tempfile.TemporaryDirectory() as tmp:
        setup = time.perf_counter()
        bundle = _bundle(Path(tmp))
        _enrol(bundle, gallery)
        setup_s = time.perf_counter() - setup
        floor = _floor_ms(bundle, queries)
        port = _free_port()
        server = _serve(bundle, port, args.threads)
        try:
            _load(f"http://127.0.0.1:{port}", queries, args.clients, 2.0)  # warm-up
            result = _load(f"http://127.0.0.1:{port}", queries, args.clients, args.seconds)
        finally:
            server.terminate()
            server.wait(30)
    report = {
        "gallery_images": args.gallery,
        "identities": args.gallery // PER_IDENTITY,
        "gallery_source": source,
        "clients": args.clients,
        "onnxruntime_threads": args.threads,
        "model": "ConvNet 1×28×28 → 64-d (ONNX, onnxruntime CPU)",
        "in_process_identify_p50_ms": floor,
        "setup_seconds": setup_s,
        **result,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        "| gallery | clients | requests/s | p50 ms | p99 ms | max ms | errors | in-process p50 ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.gallery} ({source}) | {args.clients} | {result['requests_per_s']:.1f} | "
        f"{result['p50_ms']:.1f} | {result['p99_ms']:.1f} | {result['max_ms']:.1f} | "
        f"{result['errors']} | {floor:.2f} |"
    )


if __name__ == "__main__":
    main()
