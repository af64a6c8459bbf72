"""Small batches, interleaved: tripletlab against every same-loss peer, call by call.

    python -m benchmarks.small_batch_ratios                       # euclidean, B ≤ 256
    python -m benchmarks.small_batch_ratios --metrics sqeuclidean euclidean cosine

At B ≤ 256 one loss call takes 1–20 ms, and the differences between two processes (where
the allocator put things, the CPU's clock, another job's burst) are as large as the
differences between implementations. Here every implementation of one definition runs in
the same process on the same inputs, one call each in turn (the order rotated each round),
so that whatever the machine does hits all of them alike; the medians and their ratio are
reported. ``benchmarks/batch_losses.py --small`` measures each configuration in a fresh
process instead, with its peak memory. Inputs and definitions as there: L2-normalised rows,
D = 128, margin 0.2, forward + backward (``benchmarks/_steps.py``).

Writes ``benchmarks/results/small_batch_ratios.json`` and prints one markdown table per
metric (tripletlab's median time / the fastest same-loss peer's; **bold** where slower).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks._steps import SAME_LOSS_PEERS, loss_step  # noqa: E402  (runs as a script too)

RESULTS = ROOT / "benchmarks" / "results" / "small_batch_ratios.json"
D = 128
LOSS_NAMES = {"tl_all": "batch-all", "tl_hard": "batch-hard", "tl_semi": "semi-hard"}


def inputs(b: int, k: int):
    """The benchmark's batch: B L2-normalised rows, B/K classes of K, shuffled."""
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(b, D, generator=g), dim=1)
    y = (torch.arange(b) // k)[torch.randperm(b, generator=g)]
    return x, y


def one_call(step, x, y) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, loss value) of one forward + backward."""
    xx = x.clone().requires_grad_(True)
    wall, cpu = time.perf_counter(), time.process_time()
    loss = step(xx, y)
    loss.backward()
    return time.perf_counter() - wall, time.process_time() - cpu, float(loss.detach())


def measure(tl: str, b: int, k: int, metric: str, repeats: int) -> dict:
    """Interleaved medians of ``tl`` and its same-loss peers on one batch."""
    methods = (tl, *SAME_LOSS_PEERS[tl])
    steps = {m: loss_step(m, metric) for m in methods}
    x, y = inputs(b, k)
    walls: dict[str, list[float]] = {m: [] for m in methods}
    cpus: dict[str, list[float]] = {m: [] for m in methods}
    values = {}
    for round_ in range(repeats + 3):  # three warm-up rounds
        order = methods[round_ % len(methods) :] + methods[: round_ % len(methods)]
        for m in order:
            wall, cpu, values[m] = one_call(steps[m], x, y)
            if round_ >= 3:
                walls[m].append(wall)
                cpus[m].append(cpu)
    record = {"loss": tl, "B": b, "K": k, "metric": metric, "methods": {}}
    for m in methods:
        record["methods"][m] = {
            "median_ms": round(1000 * statistics.median(walls[m]), 4),
            "median_cpu_ms": round(1000 * statistics.median(cpus[m]), 4),
            "loss": values[m],
        }
    peers = {m: r for m, r in record["methods"].items() if m != tl}
    fastest = min(peers, key=lambda m: peers[m]["median_ms"])
    mine = record["methods"][tl]
    record["fastest_peer"] = fastest
    record["time_ratio"] = mine["median_ms"] / peers[fastest]["median_ms"]
    record["cpu_ratio"] = mine["median_cpu_ms"] / peers[fastest]["median_cpu_ms"]
    record["largest_loss_difference"] = max(abs(r["loss"] - mine["loss"]) for r in peers.values())
    return record


def markdown(records: list[dict], metric: str) -> str:
    """The ratio table of one metric: losses × B rows, K columns."""
    mine = [r for r in records if r["metric"] == metric]
    bs = sorted({r["B"] for r in mine})
    ks = sorted({r["K"] for r in mine})
    lines = [
        f"| {metric} | B | " + " | ".join(f"K={k}" for k in ks) + " |",
        "|---|---|" + "---|" * len(ks),
    ]
    for tl, name in LOSS_NAMES.items():
        for b in bs:
            cells = []
            for k in ks:
                found = [r for r in mine if r["loss"] == tl and r["B"] == b and r["K"] == k]
                ratio = found[0]["time_ratio"] if found else None
                cells.append(
                    "—" if ratio is None else f"**{ratio:.2f}**" if ratio > 1 else f"{ratio:.2f}"
                )
            lines.append(f"| {name} | {b} | " + " | ".join(cells) + " |")
    at_most = sum(r["time_ratio"] <= 1 for r in mine)
    worst = max(mine, key=lambda r: r["time_ratio"])
    lines += [
        "",
        f"{at_most} of {len(mine)} at most the fastest peer's median time; the largest ratio "
        f"{worst['time_ratio']:.2f} ({LOSS_NAMES[worst['loss']]}, B = {worst['B']}, "
        f"K = {worst['K']}, against {worst['fastest_peer']}); loss values equal to "
        f"{max(r['largest_loss_difference'] for r in mine):.1e}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--metrics",
        nargs="*",
        default=["euclidean"],
        choices=("sqeuclidean", "euclidean", "cosine"),
    )
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[32, 64, 128, 256])
    parser.add_argument("--ks", type=int, nargs="*", default=[2, 4, 8, 16, 32])
    parser.add_argument("--repeats", type=int, default=40, help="timed rounds per batch")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    load_start = " ".join(f"{v:.2f}" for v in os.getloadavg())
    records = []
    for metric in args.metrics:
        for tl in LOSS_NAMES:
            for b in args.batch_sizes:
                for k in args.ks:
                    if 2 * k > b:
                        continue
                    record = measure(tl, b, k, metric, args.repeats)
                    records.append(record)
                    print(
                        f"{metric:>11} {tl:>7} B={b:<4} K={k:<3} "
                        f"{record['time_ratio']:.2f}× {record['fastest_peer']}",
                        flush=True,
                    )
    machine = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "threads": args.threads,
        "torch": torch.__version__,
        "load": f"{load_start} → " + " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }
    tables = {metric: markdown(records, metric) for metric in args.metrics}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps({"machine": machine, "records": records, "markdown": tables}, indent=2) + "\n"
    )
    print()
    for table in tables.values():
        print(table)


if __name__ == "__main__":
    main()
