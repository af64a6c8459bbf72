"""The main job, timed: ``tripletlab train`` with all defaults, including the report.

Runs the exact command a newcomer types (``tripletlab train``, no options) in a fresh
temporary working directory, so it writes ``runs/digits-mlp/`` there: data loading, training,
evaluation against the raw-pixel baseline, ``metrics.json`` and the report with its PNGs.
The wall time is that of the whole process (Python start and imports included).

Targets (issue 4): wall time < 60 s on a 2-core machine; test precision@1 ≥ 0.98; MAP@R
above the raw-pixel baseline's.

The machine may be shared: the 1-minute load average before and after each run is recorded,
and the CPU time (user + system) of the process, which does not grow with other people's load:
on an idle 2-core machine the wall time is about the CPU time (one busy thread).

Usage: ``python benchmarks/train_digits.py [--repeats 3] [--seeds 0 1 2]``.
Writes ``benchmarks/results/train_digits.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("tripletlab")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tripletlab.cli"]


def run_once(seed: int | None) -> dict:
    """One ``tripletlab train`` (with ``--seed`` only when ``seed`` is given)."""
    workdir = Path(tempfile.mkdtemp(prefix="tl-bench-"))
    try:
        args = [*_cli(), "train"] + ([] if seed is None else ["--seed", str(seed)])
        load_before = os.getloadavg()[0]
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        proc = subprocess.run(args, cwd=workdir, capture_output=True, text=True, timeout=900)
        wall = time.perf_counter() - started
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (
            cpu_after.ru_stime - cpu_before.ru_stime
        )
        load_after = os.getloadavg()[0]
        if proc.returncode != 0:
            raise RuntimeError(f"tripletlab train failed: {proc.stderr[-2000:]}")
        run = workdir / "runs" / "digits-mlp"
        metrics = json.loads((run / "metrics.json").read_text())
        pngs = sorted(p.name for p in run.glob("*.png"))
        return {
            "seed": 0 if seed is None else seed,
            "wall_seconds": wall,
            "cpu_seconds": cpu,
            "train_seconds": metrics["train_seconds"],
            "eval_seconds": metrics["eval_seconds"],
            "epochs": metrics["epochs"],
            "load_before": load_before,
            "load_after": load_after,
            "test": {k: metrics["test"][k] for k in ("precision_at_1", "map_at_r", "r_precision")},
            "baseline": {
                k: metrics["baseline"][k] for k in ("precision_at_1", "map_at_r", "r_precision")
            },
            "report": (run / "report.md").is_file(),
            "figures": pngs,
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="runs of the plain command")
    parser.add_argument("--seeds", type=int, nargs="*", default=[], help="extra seeded runs")
    args = parser.parse_args()
    rows = [run_once(None) for _ in range(args.repeats)]
    rows += [run_once(seed) for seed in args.seeds]
    result = {
        "command": "tripletlab train",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "targets": {"wall_seconds_max": 60, "precision_at_1_min": 0.98},
        "runs": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train_digits.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        "| command | seed | wall s | train s | load avg | P@1 | MAP@R | baseline P@1 | baseline MAP@R |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for i, row in enumerate(rows):
        cmd = "tripletlab train" if i < args.repeats else f"tripletlab train --seed {row['seed']}"
        print(
            f"| `{cmd}` | {row['seed']} | {row['wall_seconds']:.1f} | {row['cpu_seconds']:.1f} "
            f"| {row['train_seconds']:.1f} "
            f"| {row['load_before']:.1f}→{row['load_after']:.1f} "
            f"| {row['test']['precision_at_1']:.4f} | {row['test']['map_at_r']:.4f} "
            f"| {row['baseline']['precision_at_1']:.4f} | {row['baseline']['map_at_r']:.4f} |"
        )


if __name__ == "__main__":
    main()
