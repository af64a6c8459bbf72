"""Fashion-MNIST, small CNN, 10 epochs: tripletlab vs pytorch-metric-learning (PML).

Both sides train the same network (tripletlab's ``ConvNet``: two conv blocks, 64-D output,
L2-normalised) from the same initial weights, on the same P×K batches in the same order
(tripletlab's ``PKSampler``, P=10 classes × K=12 images), with the same
optimiser (Adam, lr 1e-3), epochs and seed. Only the loss differs in implementation:

* tripletlab: ``BatchAllTripletLoss(margin=0.2, metric="sqeuclidean", reduction="mean_active")``
* PML: ``TripletMarginMiner(margin=0.2, type_of_triplets="all")`` +
  ``TripletMarginLoss(margin=0.2)`` with ``LpDistance(power=2)`` (squared L2) and PML's
  default ``AvgNonZeroReducer`` (mean over active triplets) — mathematically the same loss,
  so the comparison is one of implementation (speed, memory), not of method.

Evaluation (identical code for both): the 10,000 official test images embedded and
ranked leave-one-out; precision@1 and MAP@R (Musgrave et al. 2020) with tripletlab's
evaluator (its agreement with PML's AccuracyCalculator is tested separately).

Subset: on this machine (2 CPU cores shared with other engineers' jobs, load average ~8
while this ran) one epoch over 500 images took ~5.5 s, so 10 epochs over all 60,000
training images would take ~2 h per library. By default 300 training images per class
(3,000, a seeded stratified subset) are used, and all 10,000 official test images are
evaluated. ``--train-per-class 6000`` runs the full training set.

Both libraries train in ONE process in lockstep — for each batch, a tripletlab step then
a PML step on the same inputs — so both see the same load on this shared machine; each
library's steps are timed separately (wall and process CPU time), which is its epoch time.

Usage: ``python benchmarks/fashion_mnist_vs_pml.py [--epochs 10] [--train-per-class 300]``.
Needs the Debian package ``dataset-fashion-mnist`` and the ``bench`` extra.
Writes ``benchmarks/results/fashion_mnist_vs_pml.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
P, K, LR, MARGIN, EMBEDDING_DIM = 10, 12, 1e-3, 0.2, 64


def _data(train_per_class: int, seed: int):
    import torch

    from tripletlab.data import load_dataset, stratified_split

    ds = load_dataset("fashion-mnist")
    official = ds.official_test
    x_train, y_train = ds.features[~official], ds.labels[~official]
    x_test, y_test = ds.features[official], ds.labels[official]
    n_train = len(y_train)
    if train_per_class * 10 < n_train:
        keep = stratified_split(y_train, 1 - train_per_class * 10 / n_train, seed).train
        x_train, y_train = x_train[keep], y_train[keep]
    mean, std = float(x_train.mean()), float(x_train.std())
    return (
        ((x_train - mean) / std).float(),
        y_train,
        ((x_test - mean) / std).float(),
        y_test,
        torch,
    )


def _loss(name: str):
    if name == "tripletlab":
        from tripletlab import BatchAllTripletLoss

        loss = BatchAllTripletLoss(margin=MARGIN, metric="sqeuclidean", reduction="mean_active")
        return lambda emb, labels: loss(emb, labels)
    from pytorch_metric_learning import losses, miners
    from pytorch_metric_learning.distances import LpDistance

    distance = LpDistance(power=2, normalize_embeddings=False)  # inputs are unit-norm already
    miner = miners.TripletMarginMiner(margin=MARGIN, type_of_triplets="all", distance=distance)
    loss = losses.TripletMarginLoss(margin=MARGIN, distance=distance)

    def pml(emb, labels):
        return loss(emb, labels, miner(emb, labels))

    return pml


def lockstep(epochs: int, train_per_class: int, seed: int, threads: int) -> list[dict]:
    """Train both libraries in one process, step by step on the same batch, so that both see
    the same machine load (this machine is shared); time each library's steps separately."""
    import copy

    import torch.nn.functional as F

    x_train, y_train, x_test, y_test, torch = _data(train_per_class, seed)
    torch.set_num_threads(threads)
    from tripletlab.data.sampler import PKSampler
    from tripletlab.evaluate import retrieval_metrics
    from tripletlab.nn.networks import build_model

    torch.manual_seed(seed)
    initial = build_model("cnn", (1, 28, 28), EMBEDDING_DIM)
    names = ("tripletlab", "pml")
    models = {name: copy.deepcopy(initial) for name in names}
    optimizers = {name: torch.optim.Adam(models[name].parameters(), lr=LR) for name in names}
    losses = {name: _loss(name) for name in names}
    wall = {name: [0.0] * epochs for name in names}
    cpu = {name: [0.0] * epochs for name in names}
    sampler = PKSampler(y_train, p=P, k=K, seed=seed)
    for epoch in range(epochs):
        sampler.set_epoch(epoch + 1)
        for batch in sampler:
            index = torch.as_tensor(batch)
            inputs, labels = x_train[index], y_train[index]
            for name in names:
                model, optimizer = models[name], optimizers[name]
                model.train()
                w0, c0 = time.perf_counter(), time.process_time()
                optimizer.zero_grad(set_to_none=True)
                loss = losses[name](F.normalize(model(inputs), dim=1), labels)
                loss.backward()
                optimizer.step()
                wall[name][epoch] += time.perf_counter() - w0
                cpu[name][epoch] += time.process_time() - c0
        print(
            f"epoch {epoch + 1}: " + ", ".join(f"{n} {wall[n][epoch]:.1f} s" for n in names),
            file=sys.stderr,
            flush=True,
        )
    rows = []
    for name in names:
        model = models[name].eval()
        with torch.no_grad():
            emb = torch.cat(
                [
                    F.normalize(model(x_test[i : i + 1000]), dim=1)
                    for i in range(0, len(x_test), 1000)
                ]
            )
        metrics = retrieval_metrics(emb, y_test, ks=(1,))
        rows.append(
            {
                "library": name,
                "epoch_seconds": wall[name],
                "epoch_cpu_seconds": cpu[name],
                "mean_epoch_seconds": sum(wall[name]) / epochs,
                "mean_epoch_cpu_seconds": sum(cpu[name]) / epochs,
                "precision_at_1": metrics["precision_at_1"],
                "map_at_r": metrics["map_at_r"],
                "r_precision": metrics["r_precision"],
                "n_train": len(y_train),
                "n_test": len(y_test),
                "steps_per_epoch": len(sampler),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-per-class", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    rows = lockstep(args.epochs, args.train_per_class, args.seed, args.threads)
    for row in rows:
        row["load_before"], row["load_after"] = load_before, os.getloadavg()[0]
    result = {
        "setup": {
            "network": f"tripletlab ConvNet (conv32-conv64-fc128) → {EMBEDDING_DIM}-D, L2-normalised",
            "batches": f"P×K = {P}×{K} (tripletlab PKSampler, same order for both)",
            "optimizer": f"Adam lr {LR}",
            "loss": f"batch-all triplet, margin {MARGIN}, squared L2, mean over active triplets",
            "epochs": args.epochs,
            "train_per_class": args.train_per_class,
            "seed": args.seed,
            "threads": args.threads,
        },
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fashion_mnist_vs_pml.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        "| library | train images | epochs | mean epoch s (wall) | mean epoch s (CPU) "
        "| test P@1 | test MAP@R | load avg |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['library']} | {row['n_train']} | {args.epochs} "
            f"| {row['mean_epoch_seconds']:.2f} | {row['mean_epoch_cpu_seconds']:.2f} "
            f"| {row['precision_at_1']:.4f} "
            f"| {row['map_at_r']:.4f} | {row['load_before']:.1f}→{row['load_after']:.1f} |"
        )


if __name__ == "__main__":
    main()
