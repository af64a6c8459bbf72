"""The field protocols on Fashion-MNIST exported into a Market-1501-like layout and an LFW-like
pairs file, with and without re-ranking / query expansion.

Steps (everything through the library's own readers and protocols):

1. export Fashion-MNIST (Debian ``dataset-fashion-mnist``) as image files:
   * ``market/`` — a Market-1501 layout: identities = the 10 classes (ids 1…10), two fake
     cameras assigned at random; ``query/`` = ``--query-per-class`` test images per class,
     ``bounding_box_test/`` = the rest of the test set, ``bounding_box_train/`` =
     ``--train-per-class`` training images per class; PNG files named
     ``0003_c2s1_000123_00.png``;
   * ``lfw/`` — an LFW layout: ``pairs.txt`` with 10 folds × 300 matched + 300 mismatched
     pairs of test images (seeded), images ``lfw/<Class>/<Class>_0001.jpg``;
2. read both back with :func:`tripletlab.data.layouts.load_layout` and decode the paths;
3. embed with raw pixels, PCA-64 (fitted on the train split) and a small CNN trained for a few
   epochs with the batch-all triplet loss through :class:`tripletlab.train.trainer.Trainer`;
4. evaluate: re-id (rank-1/5/10, mAP, mINP, same-camera exclusion) plain / k-reciprocal
   re-ranking (k1 = 20, k2 = 6, λ = 0.3) / AQE (n = 5) / α-QE (n = 5, α = 3); LFW 10-fold
   accuracy and TAR@FAR; open-set DIR@FAR with classes 9–10 left out of the gallery; per-class
   table of the CNN;
5. write ``benchmarks/results/protocols_fashion.json`` and a report (Markdown + HTML,
   retrieval grids, CMC curves) in ``benchmarks/results/protocols_fashion/``.

Caveat printed in the report: identities are *classes* here (10 of them, each with ~1,000
gallery images), so the trained model has seen the test identities and "same camera" is a
random split — the numbers illustrate the protocols; they are not a re-id benchmark.

Usage: ``flock /tmp/tripletlab-bench.lock python benchmarks/protocols_fashion.py``
(``--quick`` for a small smoke run).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

try:
    from benchmarks._memory import PeakMemory
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    from _memory import PeakMemory  # type: ignore[no-redef]

RESULTS = Path(__file__).parent / "results"
K1, K2, LAMBDA, QE_N, QE_ALPHA = 20, 6, 0.3, 5, 3.0
FARS_VERIFICATION = (1e-3, 1e-2)
FARS_IDENTIFICATION = (0.01, 0.1)
OPEN_SET_HELD_OUT = (9, 10)  # identities (classes 8, 9: bag, ankle boot) not enrolled


def export_market(images, labels, train_images, train_labels, root, per_class_query, seed):
    """Market-1501-like folders; identity = class + 1 (Market's 0 means distractor)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    query = np.zeros(len(labels), dtype=bool)
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        query[rng.choice(members, per_class_query, replace=False)] = True
    cameras = rng.integers(1, 3, len(labels))
    for index in range(len(labels)):
        folder = "query" if query[index] else "bounding_box_test"
        name = f"{labels[index] + 1:04d}_c{cameras[index]}s1_{index:06d}_00.png"
        _save(images[index], root / folder / name)
    train_cameras = rng.integers(1, 3, len(train_labels))
    for index in range(len(train_labels)):
        name = f"{train_labels[index] + 1:04d}_c{train_cameras[index]}s1_{index:06d}_00.png"
        _save(train_images[index], root / "bounding_box_train" / name)
    return root


def export_lfw(images, labels, class_names, root, seed, folds=10, per_kind=300):
    """An LFW-like pairs.txt (10 folds of matched + mismatched pairs) and its images."""
    rng = np.random.default_rng(seed)
    names = [n.replace("/", "_").replace(" ", "_") for n in class_names]
    members = {c: np.flatnonzero(labels == c) for c in range(len(names))}
    used: dict[int, int] = {}  # image index → its number within its class

    def number(index):
        if index not in used:
            cls = labels[index]
            used[index] = int(np.searchsorted(members[cls], index)) + 1
        return used[index]

    lines = [f"{folds}\t{per_kind}"]
    for _ in range(folds):
        for _ in range(per_kind):
            cls = int(rng.integers(len(names)))
            a, b = rng.choice(members[cls], 2, replace=False)
            lines.append(f"{names[cls]}\t{number(a)}\t{number(b)}")
        for _ in range(per_kind):
            c1, c2 = rng.choice(len(names), 2, replace=False)
            a, b = rng.choice(members[c1]), rng.choice(members[c2])
            lines.append(f"{names[c1]}\t{number(a)}\t{names[c2]}\t{number(b)}")
    for index, n in used.items():
        cls_name = names[labels[index]]
        _save(images[index], root / "lfw" / cls_name / f"{cls_name}_{n:04d}.jpg", quality=100)
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return root


def _save(image, path, quality=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(np.asarray(image, dtype=np.uint8), mode="L")
    picture.save(path, **({"quality": quality} if quality else {}))


def read_pixels(paths):
    """(N, 784) float32 in [0, 1] from image files."""
    out = np.empty((len(paths), 28 * 28), dtype=np.float32)
    for i, path in enumerate(paths):
        with Image.open(path) as image:
            out[i] = np.asarray(image.convert("L"), dtype=np.float32).reshape(-1) / 255.0
    return out


def train_cnn(x_train, y_train, epochs, seed, threads):
    from tripletlab import BatchAllTripletLoss
    from tripletlab.nn.networks import build_model
    from tripletlab.train.trainer import Trainer

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    model = build_model("cnn", (1, 28, 28), 64)
    loss = BatchAllTripletLoss(margin=0.2, reduction="mean_active")
    trainer = Trainer(
        model, loss, torch.optim.Adam(model.parameters(), lr=1e-3), seed=seed, progress=False
    )
    history = trainer.fit(
        torch.as_tensor(x_train), torch.as_tensor(y_train), epochs=epochs, p=10, k=12
    )
    return trainer, history


def embedders(train_pixels, train_labels, args):
    from sklearn.decomposition import PCA

    mean, std = float(train_pixels.mean()), float(train_pixels.std())
    pca = PCA(64, random_state=args.seed).fit(train_pixels)
    started = time.perf_counter()
    trainer, history = train_cnn(
        (train_pixels - mean) / std, train_labels, args.epochs, args.seed, args.threads
    )
    train_seconds = time.perf_counter() - started
    return {
        "raw pixels (784-D)": lambda x: torch.as_tensor(x, dtype=torch.float32),
        "PCA-64": lambda x: torch.as_tensor(pca.transform(x), dtype=torch.float32),
        f"CNN, batch-all triplet, {args.epochs} epochs (64-D)": lambda x: trainer.embed(
            torch.as_tensor((x - mean) / std, dtype=torch.float32)
        ),
    }, {"cnn_train_seconds": train_seconds, "cnn_history": history}


def reid_variants(qe, q, ge, g):
    from tripletlab.evaluate.query_expansion import expand_queries
    from tripletlab.evaluate.reid import reid_metrics, reid_metrics_from_blocks
    from tripletlab.evaluate.rerank import k_reciprocal_blocks

    cams = {"query_cameras": q.cameras, "gallery_cameras": g.cameras}
    out, seconds, memory_mb = {}, {}, {}

    def timed(name, fn):
        started = time.perf_counter()
        with PeakMemory() as memory:
            out[name] = fn()
        seconds[name] = time.perf_counter() - started
        memory_mb[name] = memory.mb

    timed("plain", lambda: reid_metrics(qe, q.labels, ge, g.labels, **cams))
    timed(
        f"k-reciprocal (k1={K1}, k2={K2}, λ={LAMBDA})",
        lambda: reid_metrics_from_blocks(
            k_reciprocal_blocks(qe, ge, k1=K1, k2=K2, lambda_value=LAMBDA),
            q.labels,
            g.labels,
            **cams,
        ),
    )
    timed(
        f"AQE (n={QE_N})",
        lambda: reid_metrics(
            expand_queries(qe, ge, n=QE_N), q.labels, ge, g.labels, metric="cosine", **cams
        ),
    )
    timed(
        f"α-QE (n={QE_N}, α={QE_ALPHA:g})",
        lambda: reid_metrics(
            expand_queries(qe, ge, n=QE_N, alpha=QE_ALPHA),
            q.labels,
            ge,
            g.labels,
            metric="cosine",
            **cams,
        ),
    )
    for name in out:
        out[name]["seconds"] = seconds[name]
        out[name]["peak_extra_mb"] = memory_mb[name]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/tripletlab-protocols-fashion"))
    parser.add_argument("--query-per-class", type=int, default=100)
    parser.add_argument("--train-per-class", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="500 test images: a smoke run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from tripletlab.data import load_fashion_mnist
    from tripletlab.data.idx import FASHION_MNIST_CLASSES
    from tripletlab.data.layouts import load_layout
    from tripletlab.evaluate.dml_protocol import per_class_table
    from tripletlab.evaluate.face_verification import pair_distances, ten_fold_verification
    from tripletlab.evaluate.open_set import open_set_identification
    from tripletlab.evaluate.ranking import distance_blocks, rank_blocks
    from tripletlab.evaluate.rerank import k_reciprocal_blocks

    started = time.perf_counter()
    ds = load_fashion_mnist()
    pixels = (ds.features.reshape(len(ds.labels), 28, 28).numpy() * 255).round().astype(np.uint8)
    labels, official = ds.labels.numpy(), ds.official_test.numpy()
    rng = np.random.default_rng(args.seed)
    test = np.flatnonzero(official)
    per_kind = 300  # LFW's pairs per kind and fold
    if args.quick:
        test = np.sort(rng.choice(test, 500, replace=False))
        args.query_per_class, args.train_per_class, args.epochs, per_kind = 5, 50, 1, 30
    train = np.concatenate(
        [
            rng.choice(
                np.flatnonzero(~official & (labels == c)), args.train_per_class, replace=False
            )
            for c in range(10)
        ]
    )
    data = args.data / ("quick" if args.quick else "full")
    if not (data / "done").exists():
        export_market(
            pixels[test],
            labels[test],
            pixels[train],
            labels[train],
            data / "market",
            args.query_per_class,
            args.seed,
        )
        export_lfw(
            pixels[test],
            labels[test],
            FASHION_MNIST_CLASSES,
            data / "lfw",
            args.seed,
            per_kind=per_kind,
        )
        (data / "done").write_text("ok\n")
    export_seconds = time.perf_counter() - started

    market = load_layout(f"market1501:{data / 'market'}")
    lfw = load_layout(f"lfw:{data / 'lfw'}")
    q, g, tr = market.split("query"), market.split("gallery"), market.split("train")
    q_px, g_px, tr_px = read_pixels(q.paths), read_pixels(g.paths), read_pixels(tr.paths)
    lfw_px = read_pixels(lfw.split("test").paths)
    embed, training = embedders(tr_px, tr.labels - 1, args)

    names = {i + 1: n for i, n in enumerate(FASHION_MNIST_CLASSES)}
    out_dir = RESULTS / ("protocols_fashion_quick" if args.quick else "protocols_fashion")
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict = {"setup": {**vars(args), "data": str(data)}, "embeddings": {}}
    results["setup"].update(
        n_query=len(q),
        n_gallery=len(g),
        n_train=len(tr),
        n_pairs=len(lfw.pairs),
        export_seconds=export_seconds,
        cnn_train_seconds=training["cnn_train_seconds"],
    )
    sections = []
    from tripletlab.report.protocol_report import (
        dml_section,
        identification_section,
        reid_section,
        verification_section,
        write_protocol_report,
    )
    from tripletlab.report.retrieval_grid import plot_retrieval_grid

    for index, (name, fn) in enumerate(embed.items()):
        qe, ge = fn(q_px), fn(g_px)
        reid = reid_variants(qe, q, ge, g)
        pair_d = pair_distances(fn(lfw_px), lfw.pairs.first, lfw.pairs.second)
        verification = ten_fold_verification(
            pair_d, lfw.pairs.same, lfw.pairs.folds, fars=FARS_VERIFICATION
        )
        enrolled = ~np.isin(g.labels, OPEN_SET_HELD_OUT)
        open_set = open_set_identification(
            qe,
            q.labels,
            ge[torch.as_tensor(enrolled)],
            g.labels[enrolled],
            fars=FARS_IDENTIFICATION,
        )
        results["embeddings"][name] = {
            "reid": reid,
            "verification": verification,
            "open_set": open_set,
        }
        tag = f"e{index}"
        body = f"### Re-identification protocol\n\n{reid_section(reid, out_dir, name=f'cmc_{tag}.png')}\n"
        body += (
            f"### Verification (LFW-like pairs, 10 folds)\n\n{verification_section(verification)}\n"
        )
        body += f"### Open-set identification (identities {OPEN_SET_HELD_OUT} not enrolled)\n\n{identification_section(open_set)}\n"
        if index == len(embed) - 1:
            cams = {
                "query_cameras": q.cameras,
                "gallery_cameras": g.cameras,
                "junk_label": -1,
                "top_k": 6,
            }
            for variant, blocks in (
                ("plain", distance_blocks(qe, ge)),
                ("re-ranked", k_reciprocal_blocks(qe, ge, k1=K1, k2=K2, lambda_value=LAMBDA)),
            ):
                ranked = rank_blocks(blocks, q.labels, g.labels, **cams)
                plot_retrieval_grid(
                    ranked.top,
                    ranked.top_relevant,
                    q.labels,
                    g.labels,
                    out_dir / f"grid_{variant}.png",
                    query_images=q.paths,
                    gallery_images=g.paths,
                    answerable=ranked.answerable,
                    class_names=names,
                    seed=args.seed,
                    title=f"{variant}: query (blue), top 6 (green right, red wrong)",
                )
                body += f"\n![retrieval grid, {variant}](grid_{variant}.png)\n"
                if variant == "plain":
                    rows = per_class_table(ranked, q.labels, g.labels, class_names=names)
                    from tripletlab.evaluate.dml_protocol import summarize_dml

                    body += "\n### Per class (query vs gallery, same-camera exclusion)\n\n"
                    body += dml_section({"plain": summarize_dml(ranked, (1, 10))}, rows, worst=5)
                    results["embeddings"][name]["per_class"] = rows
        sections.append((name, body))
    results["total_seconds"] = time.perf_counter() - started
    intro = (
        f"Fashion-MNIST test set exported as a Market-1501 layout ({len(q)} queries, {len(g)} gallery "
        f"images, identities = the 10 classes, two random cameras) and an LFW pairs file "
        f"({len(lfw.pairs)} pairs in 10 folds). Identities are classes and the CNN was trained on "
        "the same classes: the numbers illustrate the protocols, they are not a re-id benchmark."
    )
    write_protocol_report(out_dir, "Field protocols on Fashion-MNIST", sections, intro=intro)
    (RESULTS / (out_dir.name + ".json")).write_text(
        json.dumps(results, indent=2, default=_jsonable) + "\n"
    )
    _print_table(results)


def _jsonable(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value).__name__)


def _print_table(results) -> None:
    print("| embedding | variant | rank-1 | mAP | mINP | seconds | peak extra MiB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, r in results["embeddings"].items():
        for variant, m in r["reid"].items():
            print(
                f"| {name} | {variant} | {m['rank_1']:.4f} | {m['map']:.4f} | {m['minp']:.4f} | "
                f"{m['seconds']:.1f} | {m['peak_extra_mb']:.0f} |"
            )
    print(
        "\n| embedding | LFW-like accuracy | TAR@FAR=1e-3 | TAR@FAR=1e-2 | DIR@FAR=0.01 | DIR@FAR=0.1 |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results["embeddings"].items():
        v, o = r["verification"], r["open_set"]
        print(
            f"| {name} | {v['accuracy_mean']:.4f} ± {v['accuracy_std']:.4f} | "
            f"{v['tar_at_far_0.001_mean']:.4f} | {v['tar_at_far_0.01_mean']:.4f} | "
            f"{o['dir_at_far_0.01']:.4f} | {o['dir_at_far_0.1']:.4f} |"
        )


if __name__ == "__main__":
    main()
