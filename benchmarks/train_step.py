"""End-to-end training steps: a small network + batch triplet loss + optimizer step.

    python -m benchmarks.train_step                    # B ∈ {128, 1024}, all losses
    python -m benchmarks.train_step --batch-sizes 128 --steps 20

Every implementation trains the same network from the same initial weights on the same
batches (an MLP 256 → 512 → 128 with ReLU, L2-normalised output, Adam lr 1e-3, Euclidean
distance, margin 0.2, a P×K batch with K = 4), in one process, interleaved step by step so
that the machine's load hits every implementation alike: tripletlab, sentence-transformers
6.x (its ``batch_*_triplet_loss`` methods on tensors) and pytorch-metric-learning 2.9 (same
definitions, see ``benchmarks/_steps.py``), and the tripletlab and sentence-transformers steps
under ``torch.compile`` (the whole forward: network, normalisation and loss). A control row
trains the same network with the sum of the embeddings as its loss, eager and compiled: what
compiling the network alone gains or costs here.
Reported: steps per second (median step time) and the loss after the last step. Results go to
``benchmarks/results/train_step.json`` and a markdown table. CPU only here (CUDA unmeasured).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks._steps import loss_step  # noqa: E402  (runs as a script too)

RESULTS = ROOT / "benchmarks" / "results" / "train_step.json"
IN_DIM, HIDDEN, OUT_DIM = 256, 512, 128
#: (label in the table, loss method of benchmarks/_steps.py) per loss family.
FAMILIES = {
    "batch-all": ("tl_all", "st_all", "pml_all"),
    "batch-hard": ("tl_hard", "st_hard", "pml_batch_hard"),
    "semi-hard": ("tl_semi", "st_semi"),
    # the same step with the sum of the embeddings as its loss: what compiling the network
    # alone gains or costs, against which the losses' compiled-vs-eager ratios are read
    "control": ("no_loss",),
}


def make_trainer(method: str, seed: int, compiled: bool):
    """A closure doing one optimizer step on (x, y); returns the loss value."""
    import torch

    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(IN_DIM, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, OUT_DIM)
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = (lambda e, y: e.sum()) if method == "no_loss" else loss_step(method, "euclidean")

    def forward(x, y):
        return loss_fn(torch.nn.functional.normalize(net(x), dim=1), y)

    run = torch.compile(forward) if compiled else forward

    def step(x, y) -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = run(x, y)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def measure(batch_size: int, steps: int, k: int, compile_tl: bool, threads: int = 2) -> list[dict]:
    import torch

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(steps + 2):  # two warm-up steps (the compiled one compiles there)
        x = torch.randn(batch_size, IN_DIM, generator=g)
        y = (torch.arange(batch_size) // k)[torch.randperm(batch_size, generator=g)]
        batches.append((x, y))
    records = []
    for family, methods in FAMILIES.items():
        variants = [(m, False) for m in methods]
        if compile_tl:
            # tripletlab's step compiled, and sentence-transformers' (plain tensor code that
            # dynamo traces whole): whether compiling pays is measured for both
            variants += [(m, True) for m in methods if not m.startswith("pml_")]
        trainers = {v: make_trainer(v[0], seed=1, compiled=v[1]) for v in variants}
        times = {v: [] for v in variants}
        losses = {}
        for i, (x, y) in enumerate(batches):
            for v, step in trainers.items():  # interleaved: the same load for everyone
                t0 = time.perf_counter()
                losses[v] = step(x, y)
                if i >= 2:
                    times[v].append(time.perf_counter() - t0)
        for (method, compiled), ts in times.items():
            median = statistics.median(ts)
            records.append(
                {
                    "family": family,
                    "method": method + (" (compiled)" if compiled else ""),
                    "B": batch_size,
                    "K": k,
                    "median_step_ms": round(1000 * median, 2),
                    "steps_per_s": round(1 / median, 1),
                    "final_loss": losses[(method, compiled)],
                }
            )
    return records


def markdown(records: list[dict], load: str, threads: int = 2) -> str:
    lines = [
        "Training step (MLP 256→512→128, Adam, Euclidean, margin 0.2, K = 4), CPU, "
        f"{threads} thread{'s' if threads > 1 else ''}, "
        f"one process, interleaved; load average {load}. CUDA unmeasured (no GPU).",
        "",
        "| loss | B | implementation | steps/s | vs tripletlab | compiled vs eager | final loss |",
        "|---|---|---|---|---|---|---|",
    ]

    def same(r: dict, method: str) -> dict:
        return next(
            o
            for o in records
            if o["family"] == r["family"] and o["B"] == r["B"] and o["method"] == method
        )

    for r in records:
        base = same(r, FAMILIES[r["family"]][0])  # tripletlab's eager step (the control's own)
        ratio = r["steps_per_s"] / base["steps_per_s"]
        eager_name = r["method"].removesuffix(" (compiled)")
        speedup = (
            f"{r['steps_per_s'] / same(r, eager_name)['steps_per_s']:.2f}"
            if eager_name != r["method"]
            else ""
        )
        lines.append(
            f"| {r['family']} | {r['B']} | {r['method']} | {r['steps_per_s']} | "
            f"{ratio:.2f} | {speedup} | {r['final_loss']:.6f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    import os

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[128, 1024])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per implementation")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled variants")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads (1 on a busy machine)"
    )
    args = parser.parse_args(argv)
    load_start = " ".join(f"{v:.2f}" for v in os.getloadavg())
    records = []
    for b in args.batch_sizes:
        records += measure(b, args.steps, args.k, not args.no_compile, args.threads)
        print(f"B={b} done", flush=True)
    load = f"{load_start} → " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    table = markdown(records, load, args.threads)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"records": records, "markdown": table}, indent=2) + "\n")
    print(table)


if __name__ == "__main__":
    main()
