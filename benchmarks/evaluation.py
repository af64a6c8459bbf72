"""Retrieval evaluation at scale: tripletlab's chunked exact metrics vs PML's AccuracyCalculator.

Embeddings: Fashion-MNIST images (pixels in [0, 1]) projected to 128 dimensions by a fixed
random Gaussian matrix — float32 vectors with the dataset's real class structure, a stand-in
for trained embeddings. ``70k``: all 70,000 images (7,000 per class, so R = 6,999 per
query); ``10k``: the 10,000 official test images (R = 999). Without the Debian package
``dataset-fashion-mnist`` the same sizes are drawn from 10 Gaussian clusters.

Every case runs in a fresh subprocess (``--worker CASE``): the time is the wall time of the
metric call alone (embeddings already in memory, imports done), the memory is the peak RSS
growth during the call (sampled every 2 ms, and ``ru_maxrss`` as a cross-check). Metrics:
precision@1, R-precision and MAP@R, leave-one-out (each query excluded from its own
neighbours).

PML's ``AccuracyCalculator`` is run with ``k="max_bin_count"`` (the smallest k that computes
R-precision and MAP@R correctly; its default ``k=None`` searches all N − 1 neighbours and is
slower and larger still). PML at 70,000 is NOT run: its neighbour matrix alone, 70,000 ×
6,999 distances (float32) + indices (int64) + labels and float64 precision matrices, needs
well over 10 GB — the issue reports it exhausting 24 GB and dying on this machine, which is
shared with other work.

Usage: ``python benchmarks/evaluation.py [--repeats 3] [--threads 2] [--omp-wait-policy passive]``.
Writes ``benchmarks/results/evaluation.json`` (``evaluation_omp_passive.json`` with
``OMP_WAIT_POLICY=PASSIVE`` for every worker, PML included) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

try:
    from benchmarks._memory import PeakMemory
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    from _memory import PeakMemory  # type: ignore[no-redef]

RESULTS = Path(__file__).parent / "results"
CASES = ("tripletlab-70k", "tripletlab-10k", "pml-10k")
PML_70K_REASON = (
    "not run: PML's AccuracyCalculator holds the whole 70,000 × 6,999 neighbour matrix "
    "(faiss distances + int64 indices, then labels and float64 precision matrices of the "
    "same shape: > 10 GB); the issue reports it exhausting 24 GB and dying on this machine"
)
METRIC_NAMES = {
    "precision_at_1": "precision_at_1",
    "r_precision": "r_precision",
    "map_at_r": "mean_average_precision_at_r",
}


def embeddings(size: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(N, 128) float32 embeddings, labels, and a description of their origin."""
    generator = torch.Generator().manual_seed(0)
    projection = torch.randn(784, 128, generator=generator) / 28.0
    try:
        from tripletlab.data import load_dataset

        data = load_dataset("fashion-mnist", flatten=True)
        features, labels = data.features, data.labels
        if size == "10k":
            features, labels = features[data.official_test], labels[data.official_test]
        source = "Fashion-MNIST pixels × fixed random 784×128 Gaussian projection"
        return (features @ projection).contiguous(), labels, source
    except Exception as error:  # the Debian package is optional
        n = 70_000 if size == "70k" else 10_000
        labels = torch.arange(n) % 10
        centres = torch.randn(10, 128, generator=generator)
        x = centres[labels] + 2.0 * torch.randn(n, 128, generator=generator)
        return x, labels, f"10 Gaussian clusters (Fashion-MNIST unavailable: {error})"


def worker(case: str, threads: int) -> dict:
    """Run one case in this (fresh) process and return its measurements."""
    torch.set_num_threads(threads)
    size = case.rsplit("-", 1)[1]
    x, y, source = embeddings(size)
    if case.startswith("tripletlab"):
        from tripletlab.evaluate import retrieval_metrics

        def run() -> dict:
            found = retrieval_metrics(x, y, ks=(1,), knn_k=1)
            return {name: found[name] for name in METRIC_NAMES}

    else:
        from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

        calculator = AccuracyCalculator(
            include=tuple(METRIC_NAMES.values()), k="max_bin_count", device=torch.device("cpu")
        )

        def run() -> dict:
            found = calculator.get_accuracy(x, y)
            return {name: float(found[pml]) for name, pml in METRIC_NAMES.items()}

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with PeakMemory() as memory:
        started = time.perf_counter()
        cpu_started = time.process_time()
        values = run()
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "case": case,
        "n": len(x),
        "dim": x.shape[1],
        "max_r": int(torch.bincount(y).max()) - 1,
        "source": source,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "extra_memory_bytes": memory.extra,
        "maxrss_growth_bytes": max(0, maxrss - rss_before),
        "metrics": values,
        "threads": threads,
    }


def run_case(case: str, threads: int, omp_wait_policy: str) -> dict:
    """One case in a fresh subprocess."""
    load = os.getloadavg()[0]
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if omp_wait_policy != "default":
        env["OMP_WAIT_POLICY"] = omp_wait_policy.upper()
    output = subprocess.run(
        [sys.executable, __file__, "--worker", case, "--threads", str(threads)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    result = json.loads(output.strip().splitlines()[-1])
    result["load_average_before"] = load
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="fresh runs per case (best kept)")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=CASES)
    parser.add_argument(
        "--omp-wait-policy",
        choices=("default", "passive"),
        default="default",
        help="OMP_WAIT_POLICY of every worker (tripletlab and PML alike); 'passive' stops "
        "torch's OpenMP threads spinning between ops. Results go to evaluation.json "
        "(default) or evaluation_omp_passive.json",
    )
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.threads)))
        return

    runs: dict[str, list[dict]] = {}
    for _ in range(args.repeats):
        for case in args.cases:
            runs.setdefault(case, []).append(run_case(case, args.threads, args.omp_wait_policy))
            print(f"  {case}: {runs[case][-1]['seconds']:.2f} s", file=sys.stderr)
    best = {case: min(results, key=lambda r: r["seconds"]) for case, results in runs.items()}

    summary: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "threads": args.threads,
            "omp_wait_policy": args.omp_wait_policy,
            "platform": platform.platform(),
            "torch": torch.__version__,
            "note": "shared machine: other jobs ran concurrently; see load_average_before",
        },
        "best": best,
        "all_runs": runs,
        "pml-70k": PML_70K_REASON,
    }
    if "tripletlab-10k" in best and "pml-10k" in best:
        ours, theirs = best["tripletlab-10k"], best["pml-10k"]
        summary["speedup_10k_vs_pml"] = theirs["seconds"] / ours["seconds"]
        summary["cpu_speedup_10k_vs_pml"] = theirs["cpu_seconds"] / ours["cpu_seconds"]
        summary["max_abs_difference_10k_vs_pml"] = max(
            abs(ours["metrics"][name] - theirs["metrics"][name]) for name in METRIC_NAMES
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "evaluation.json" if args.omp_wait_policy == "default" else "evaluation_omp_passive.json"
    (RESULTS / name).write_text(json.dumps(summary, indent=2) + "\n")
    print(table(summary))


def table(summary: dict) -> str:
    lines = [
        "| case | N × D | max R | time (s, best) | CPU time (s) | extra memory (MB) | P@1 | R-precision | MAP@R |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for case, r in summary["best"].items():
        m = r["metrics"]
        lines.append(
            f"| {case} | {r['n']:,} × {r['dim']} | {r['max_r']:,} | {r['seconds']:.2f} | "
            f"{r['cpu_seconds']:.2f} | {r['extra_memory_bytes'] / 2**20:.0f} | "
            f"{m['precision_at_1']:.6f} | {m['r_precision']:.6f} | {m['map_at_r']:.6f} |"
        )
    lines.append(f"| pml-70k | 70,000 × 128 | 6,999 | — | — | — | {summary['pml-70k']} | | |")
    if "speedup_10k_vs_pml" in summary:
        lines.append("")
        lines.append(
            f"10k: tripletlab is {summary['speedup_10k_vs_pml']:.2f}× faster than PML in wall "
            f"time ({summary['cpu_speedup_10k_vs_pml']:.2f}× in CPU time); largest metric "
            f"difference {summary['max_abs_difference_10k_vs_pml']:.2e}."
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
