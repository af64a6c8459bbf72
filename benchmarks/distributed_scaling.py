"""Weak scaling of distributed training with global mining (gloo, CPU), and the gather's cost.

Each rank trains an MLP (784 → 512 → 128, Fashion-MNIST-sized random inputs) on a fixed local
P×K batch with batch-all triplet loss; 1 process vs 2 processes (one torch thread each — this
machine has 2 cores). Three variants per world size:

* ``global``: :func:`tripletlab.distributed.global_batch_loss` — embeddings gathered with
  their graph, loss mined over the global batch (exact: equals one process on K·B);
* ``local``: DDP with the loss on the local batch only (mining stays inside each rank);
* ``gather only``: the all_gather forward + its backward all_reduce alone, timed in a loop.

Throughput = global samples per second. Weak-scaling efficiency = throughput(W) /
(W · throughput(1)). Usage: ``python benchmarks/distributed_scaling.py [--steps 30]``.
Writes ``benchmarks/results/distributed_scaling.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

from tripletlab import distributed as tdist
from tripletlab.functional import batch_all_triplet_loss

RESULTS = Path(__file__).parent / "results"


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 128)
    )


def _batch(rank: int, p: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + rank)
    labels = torch.arange(p).repeat_interleave(k) + rank * p
    return torch.randn(p * k, 784, generator=gen), labels


def _time_steps(step, steps: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        step()
    tdist.barrier()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    tdist.barrier()
    return (time.perf_counter() - start) / steps


def _worker(rank: int, world: int, init_file: str, args: argparse.Namespace, out: str) -> None:
    torch.set_num_threads(1)
    if world > 1:
        tdist.init_distributed(
            "gloo", 120, rank=rank, world_size=world, init_method=f"file://{init_file}"
        )
    x, y = _batch(rank, args.p, args.k)
    model = _model()
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def train_step(global_mining: bool):
        def step() -> None:
            opt.zero_grad(set_to_none=True)
            emb = torch.nn.functional.normalize(net(x), dim=1)
            if global_mining:
                loss = tdist.global_batch_loss(batch_all_triplet_loss, emb, y)
            else:
                loss = batch_all_triplet_loss(emb, y)
            loss.backward()
            opt.step()

        return step

    emb = torch.randn(args.p * args.k, 128, requires_grad=True)

    def gather_step() -> None:
        gathered = tdist.gather_batch(emb, y)
        gathered.embeddings.sum().backward()

    result = {
        "world": world,
        "local_batch": args.p * args.k,
        "global_batch": world * args.p * args.k,
        "global_s": _time_steps(train_step(True), args.steps),
        "local_s": _time_steps(train_step(False), args.steps),
        "gather_s": _time_steps(gather_step, args.steps) if world > 1 else 0.0,
    }
    if rank == 0:
        Path(out).write_text(json.dumps(result))
    tdist.destroy_distributed()


def _run(world: int, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        mp.spawn(_worker, args=(world, os.path.join(tmp, "init"), args, out), nprocs=world)
        return json.loads(Path(out).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--p", type=int, default=32, help="classes per local batch")
    parser.add_argument("--k", type=int, default=4, help="samples per class")
    parser.add_argument("--worlds", default="1,2")
    args = parser.parse_args()
    rows = [_run(int(w), args) for w in args.worlds.split(",")]
    base = rows[0]["local_batch"] / rows[0]["global_s"]
    for r in rows:
        r["global_samples_per_s"] = r["global_batch"] / r["global_s"]
        r["local_samples_per_s"] = r["global_batch"] / r["local_s"]
        r["efficiency_global"] = r["global_samples_per_s"] / (r["world"] * base)
    meta = {
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "backend": "gloo",
        "threads_per_rank": 1,
        "model": "MLP 784-512-128",
        "loss": "batch_all_triplet_loss (mean_active)",
        "steps": args.steps,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "distributed_scaling.json"
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(
        "| ranks | local batch | global batch | step, global mining (ms) | step, local mining (ms) "
        "| gather fwd+bwd (ms) | samples/s (global) | weak-scaling efficiency |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['world']} | {r['local_batch']} | {r['global_batch']} | {1e3 * r['global_s']:.1f} "
            f"| {1e3 * r['local_s']:.1f} | {1e3 * r['gather_s']:.2f} | "
            f"{r['global_samples_per_s']:.0f} | {r['efficiency_global']:.2f} |"
        )
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
