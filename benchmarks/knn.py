"""kNN backends at scale: torch exact vs faiss flat / IVF / HNSW, and offline mining of 1M.

Data sets:
* ``random-1M``: 1,000,000 × 128 standard normal float32 (512 MB); 10,000 of its rows are the
  queries (each excluded from its own neighbours) — a subset, to keep the exact baselines in
  minutes on 2 cores.
* ``fashion-70k``: the 70,000 Fashion-MNIST images (train + test), pixels scaled to [0, 1] and
  projected to 128 dimensions by a fixed random Gaussian matrix (a stand-in for trained
  embeddings with the dataset's real cluster structure); all 70,000 rows are queries.

Columns: index build time, query time (all queries, k = 10), peak RSS growth of the step (MB,
from ``resource.getrusage`` sampled in a thread), recall@10 against the torch exact result,
and whether the ids equal torch's exactly (flat). Offline mining: the embeddings L2-normalised
(as trained ones are), semi-hard with margin 0.2, budget 1 per anchor, 4 positives,
32 candidates, all N anchors; the 1M set gets ~100 samples per class (random labels).

Usage: ``python benchmarks/knn.py [--quick] [--threads 2] [--skip-1m]``.
Writes ``benchmarks/results/knn.json`` and prints markdown tables.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from tripletlab.evaluate.knn import TorchKNN
from tripletlab.evaluate.knn_faiss import FaissKNN, recall_at_k
from tripletlab.train.offline_mining import mine_offline_triplets

try:
    from benchmarks._memory import PeakMemory
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    from _memory import PeakMemory  # type: ignore[no-redef]

RESULTS = Path(__file__).parent / "results"


def _random(n: int, dim: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=gen)


def _fashion(dim: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    try:
        from tripletlab.data import load_dataset

        ds = load_dataset("fashion-mnist")
    except Exception as exc:  # the dataset is optional on a machine
        print(f"fashion-mnist not available ({exc}); skipped")
        return None
    x = ds.features.reshape(len(ds.features), -1).float()
    if x.max() > 1.5:
        x = x / 255.0
    proj = torch.randn(x.shape[1], dim, generator=torch.Generator().manual_seed(1)) / dim**0.5
    return (x @ proj).contiguous(), ds.labels


def _bench_backends(name, refs, query_rows, backends, k=10):
    queries = refs[query_rows]
    exclude = query_rows.clone()
    rows = []
    with PeakMemory(interval=0.005) as mem:
        t0 = time.perf_counter()
        exact = TorchKNN().search(queries, k, refs, exclude=exclude)
        torch_s = time.perf_counter() - t0
    rows.append(
        {
            "data": name,
            "backend": "torch exact",
            "build_s": 0.0,
            "query_s": torch_s,
            "peak_mb": mem.mb,
            "recall@10": 1.0,
            "ids_equal_torch": True,
        }
    )
    print(f"  {name}: torch exact {torch_s:.1f}s peak {mem.mb:.0f} MB", flush=True)
    for label, backend in backends:
        with PeakMemory(interval=0.005) as mem:
            t0 = time.perf_counter()
            index = backend.build(refs)
            build_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            found = index.search(queries, k, exclude=exclude)
            query_s = time.perf_counter() - t0
        recall = recall_at_k(found, exact)
        rows.append(
            {
                "data": name,
                "backend": label,
                "build_s": build_s,
                "query_s": query_s,
                "peak_mb": mem.mb,
                "recall@10": recall,
                "ids_equal_torch": bool(torch.equal(found.indices, exact.indices)),
            }
        )
        print(
            f"  {name}: {label} build {build_s:.1f}s query {query_s:.1f}s recall {recall:.4f} peak {mem.mb:.0f} MB",
            flush=True,
        )
        del index
        gc.collect()
    return rows


def _bench_mining(name, x, y, backend_label, backend):
    # trained embeddings live on the unit sphere (margin 0.2 is FaceNet's there)
    x = torch.nn.functional.normalize(x, dim=1)
    with PeakMemory(interval=0.005) as mem:
        t0 = time.perf_counter()
        a, _, _ = mine_offline_triplets(
            x,
            y,
            "semi_hard",
            margin=0.2,
            triplets_per_anchor=1,
            positives_per_anchor=4,
            candidates=32,
            backend=backend,
            chunk_size=16384,
        )
        seconds = time.perf_counter() - t0
    row = {
        "data": name,
        "backend": backend_label,
        "n": len(x),
        "seconds": seconds,
        "peak_mb": mem.mb,
        "triplets": len(a),
        "anchors_with_triplet": int(torch.unique(a).numel()),
    }
    print(
        f"  mining {name} with {backend_label}: {seconds:.1f}s, {mem.mb:.0f} MB, {len(a)} triplets",
        flush=True,
    )
    return row


def _table(rows, keys):
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        cells = []
        for key in keys:
            v = r[key]
            cells.append(
                f"{v:.4f}"
                if isinstance(v, float) and key.startswith("recall")
                else f"{v:.2f}"
                if isinstance(v, float)
                else str(v)
            )
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k instead of 1M, 2k queries")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-1m", action="store_true")
    parser.add_argument("--skip-mining", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n_big = 100_000 if args.quick else 1_000_000
    n_queries = 2_000 if args.quick else 10_000
    dim = 128
    knn_rows, mining_rows = [], []

    fashion = _fashion(dim)
    if fashion is not None:
        x, y = fashion
        backends = [
            ("faiss flat", FaissKNN("flat", threads=args.threads)),
            (
                "faiss IVF (nlist 1024, nprobe 16)",
                FaissKNN("ivf", nlist=1024, nprobe=16, threads=args.threads),
            ),
            (
                "faiss HNSW (M 32, efSearch 64)",
                FaissKNN("hnsw", hnsw_m=32, ef_search=64, threads=args.threads),
            ),
        ]
        knn_rows += _bench_backends("fashion-70k", x, torch.arange(len(x)), backends)
        if not args.skip_mining:
            mining_rows.append(_bench_mining("fashion-70k", x, y, "torch exact", None))
            mining_rows.append(_bench_mining("fashion-70k", x, y, "faiss flat", backends[0][1]))
        del x, y

    if not args.skip_1m:
        refs = _random(n_big, dim)
        gen = torch.Generator().manual_seed(2)
        query_rows = torch.randperm(n_big, generator=gen)[:n_queries].sort().values
        nlist = 1024 if not args.quick else 256
        backends = [
            ("faiss flat", FaissKNN("flat", threads=args.threads)),
            (
                f"faiss IVF (nlist {nlist}, nprobe 16)",
                FaissKNN(
                    "ivf", nlist=nlist, nprobe=16, train_size=64 * nlist, threads=args.threads
                ),
            ),
            (
                f"faiss IVF (nlist {nlist}, nprobe 64)",
                FaissKNN(
                    "ivf", nlist=nlist, nprobe=64, train_size=64 * nlist, threads=args.threads
                ),
            ),
            (
                "faiss HNSW (M 16, efSearch 128)",
                FaissKNN("hnsw", hnsw_m=16, ef_search=128, threads=args.threads),
            ),
        ]
        name = f"random-{n_big // 1000}k"
        knn_rows += _bench_backends(name, refs, query_rows, backends)
        if not args.skip_mining:
            labels = torch.randint(0, n_big // 100, (n_big,), generator=gen)  # ~100 per class
            mining_rows.append(
                _bench_mining(
                    name, refs, labels, f"faiss IVF (nlist {nlist}, nprobe 16)", backends[1][1]
                )
            )

    meta = {
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "queries": f"{n_queries} random rows of the 1M set; all rows of fashion-70k",
        "k": 10,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("knn_quick.json" if args.quick else "knn.json")
    out.write_text(json.dumps({"meta": meta, "knn": knn_rows, "mining": mining_rows}, indent=2))
    print()
    print(
        _table(
            knn_rows,
            ["data", "backend", "build_s", "query_s", "peak_mb", "recall@10", "ids_equal_torch"],
        )
    )
    if mining_rows:
        print()
        print(
            _table(
                mining_rows,
                ["data", "backend", "n", "seconds", "peak_mb", "triplets", "anchors_with_triplet"],
            )
        )
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
