"""Real images: streaming a PNG folder + kornia augmentation + a transformers ResNet, against
the in-memory CNN path, on Fashion-MNIST.

1. Fashion-MNIST (Debian's ``dataset-fashion-mnist`` IDX files) is exported once to a PNG
   folder of class sub-folders, RGB, resized to 64 px: ``--train`` training images
   (official train split) and ``--test`` test images (official test split), plus a folder
   with the first ``--small`` training images (hard links) for the memory comparison.
2. Throughput: images/s of the DataLoader alone (decode + collate, ``--workers``
   processes) and of full training steps (loading + augmentation ``light`` + forward +
   backward + AdamW) with a small transformers ResNet built from its config (random init),
   P×K = 16×4 (Fashion-MNIST has 10 classes, so a batch holds 10×4 = 40 images).
3. Peak RSS: one fresh process per folder size streams it (``--rss-steps`` training steps,
   then one embedding pass over every image); main-process and worker peaks at ``--small``
   vs ``--train`` images. The in-memory path's float32 array size is shown for contrast.
4. Accuracy after the same budget of ``--steps`` optimiser steps: test P@1 and MAP@R of the
   streamed ResNet vs the in-memory CNN (28×28 grey tensors, tripletlab's built-in ConvNet).

Run under the shared lock: ``flock /tmp/tripletlab-bench.lock python
benchmarks/image_training.py``. Writes ``benchmarks/results/image_training.json`` and prints
a markdown table.
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
import warnings
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results"
IMAGE_SIZE = 64
#: The backbone sees 56-px crops: the "light" preset's eval centre crop (0.875) of 64 px,
#: so the folder's images are decoded at their own size (augment.load_size(56) == 64).
CROP_SIZE = 56
P, K = 16, 4
RESNET = {
    "embedding_size": 32,
    "hidden_sizes": [32, 64, 128, 256],
    "depths": [1, 1, 1, 1],
    "layer_type": "basic",
}


# -- data ----------------------------------------------------------------------------------
def export_png_folder(root: Path, n_train: int, n_test: int, n_small: int) -> dict[str, Path]:
    """train/, test/ and small/ folders of 64-px RGB PNGs (reused when already complete)."""
    from PIL import Image

    from tripletlab.data.idx import load_fashion_mnist

    folders = {"train": root / "train", "test": root / "test", "small": root / "small"}
    marker = root / f"done-{n_train}-{n_test}-{n_small}"
    if marker.exists():
        return folders
    data = load_fashion_mnist()
    pixels = (data.features[:, 0] * 255).round().to(torch.uint8).numpy()
    labels = data.labels.numpy()
    test_mask = data.official_test.numpy()
    names = [name.replace("/", "-") for name in data.class_names]
    train_index = np.flatnonzero(~test_mask)[:n_train]
    test_index = np.flatnonzero(test_mask)[:n_test]
    for split, index in (("train", train_index), ("test", test_index)):
        for position, i in enumerate(index):
            path = folders[split] / names[labels[i]] / f"{position:06d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(pixels[i]).convert("RGB")
            image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR).save(path)
    for position, i in enumerate(train_index[:n_small]):
        source = folders["train"] / names[labels[i]] / f"{position:06d}.png"
        target = folders["small"] / names[labels[i]] / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.link(source, target)
    marker.touch()
    return folders


def stream(folder: Path):
    from tripletlab.data.image_stream import stream_image_folder

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return stream_image_folder(folder, image_size=IMAGE_SIZE)


# -- models and trainers -------------------------------------------------------------------
def resnet_trainer(model_dir: Path, workers: int, seed: int = 0):
    from tripletlab.data.augment import ImagePreprocess, augment_preset, load_size
    from tripletlab.nn.backbones import build_backbone
    from tripletlab.nn.batch_losses import BatchAllTripletLoss
    from tripletlab.nn.heads import Embedder, EmbeddingHead
    from tripletlab.train.finetune import parameter_groups
    from tripletlab.train.trainer import Trainer

    torch.manual_seed(seed)
    crop = (CROP_SIZE, CROP_SIZE)
    config = augment_preset("light")
    assert load_size(crop, config) == (IMAGE_SIZE, IMAGE_SIZE)
    backbone = build_backbone(f"hf:{model_dir}", (3, *crop), pretrained=False)
    preprocess = ImagePreprocess(crop, backbone.mean, backbone.std, config)
    head = EmbeddingHead("map", backbone.feature_dim, pooling="gem", embedding_dim=64)
    model = Embedder(backbone, head, preprocess)
    optimizer = torch.optim.AdamW(parameter_groups(model, lr=1e-3, weight_decay=1e-4))
    loss = BatchAllTripletLoss(margin=0.2)
    return Trainer(model, loss, optimizer, workers=workers, progress=False, seed=seed)


def cnn_trainer(seed: int = 0):
    from tripletlab.nn.batch_losses import BatchAllTripletLoss
    from tripletlab.nn.networks import build_model
    from tripletlab.train.trainer import Trainer

    torch.manual_seed(seed)
    model = build_model("cnn", (1, 28, 28), 64)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    return Trainer(model, BatchAllTripletLoss(margin=0.2), optimizer, progress=False, seed=seed)


def save_resnet(model_dir: Path) -> Path:
    import transformers

    if not (model_dir / "config.json").exists():
        transformers.ResNetConfig(**RESNET).save_pretrained(model_dir)
    return model_dir


def evaluate(trainer, inputs, labels) -> dict[str, float]:
    from tripletlab.evaluate.retrieval import retrieval_metrics

    metrics = retrieval_metrics(trainer.embed(inputs, batch_size=256), labels)
    return {key: round(float(metrics[key]), 4) for key in ("precision_at_1", "map_at_r")}


def timed_fit(trainer, inputs, labels, steps: int) -> dict[str, float]:
    started = time.perf_counter()
    trainer.fit(inputs, labels, epochs=1, p=P, k=K, steps_per_epoch=steps)
    seconds = time.perf_counter() - started
    images = steps * min(P, int(labels.max()) + 1) * K
    return {"seconds": round(seconds, 2), "images_per_s": round(images / seconds, 1)}


def loader_throughput(dataset, workers: int, batches: int) -> float:
    from tripletlab.data.sampler import PKSampler
    from tripletlab.train.loading import device_batches, make_loader

    sampler = PKSampler(dataset.labels, p=P, k=K, seed=0)
    loader = make_loader(
        dataset, workers=workers, device=torch.device("cpu"), batch_sampler=sampler
    )
    started, images = time.perf_counter(), 0
    for i, (x, _) in enumerate(device_batches(loader, torch.device("cpu"))):
        images += len(x)
        if i + 1 >= batches:
            break
    return round(images / (time.perf_counter() - started), 1)


# -- peak RSS in a fresh process -----------------------------------------------------------
def rss_child(folder: Path, model_dir: Path, workers: int, steps: int) -> None:
    dataset = stream(folder)
    trainer = resnet_trainer(model_dir, workers)
    before = current_rss_mib()
    trainer.fit(dataset, dataset.labels, epochs=1, p=P, k=K, steps_per_epoch=steps)
    embeddings = trainer.embed(dataset, batch_size=256)  # decodes every image once
    print(
        json.dumps(
            {
                "images": len(dataset),
                "embedded": len(embeddings),
                "main_rss_before_training_mib": before,
                "main_rss_after_embedding_mib": current_rss_mib(),
                "main_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "worker_peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            }
        )
    )


def current_rss_mib() -> float:
    """This process's resident set now (the peak may be set by imports, not by the data)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss(folder: Path, model_dir: Path, workers: int, steps: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--rss-child", str(folder), "--model-dir", str(model_dir)]
    command += ["--workers", str(workers), "--rss-steps", str(steps)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the whole benchmark -------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=20000)
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--rss-steps", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/tripletlab-fmnist-png64"))
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--rss-child", type=Path, default=None)
    parser.add_argument("--rss-only", action="store_true", help="re-measure memory only")
    parser.add_argument("--output", type=Path, default=RESULTS / "image_training.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_dir = args.model_dir or args.data_dir / "resnet-small"
    if args.rss_child is not None:
        rss_child(args.rss_child, model_dir, args.workers, args.rss_steps)
        return
    if args.rss_only:  # re-measure memory only, into the existing results file
        folders = export_png_folder(args.data_dir, args.train, args.test, args.small)
        result = json.loads(args.output.read_text())
        update_rss(result, folders, model_dir, args)
        args.output.write_text(json.dumps(result, indent=2) + "\n")
        print(markdown(result))
        return
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    folders = export_png_folder(args.data_dir, args.train, args.test, args.small)
    export_seconds = time.perf_counter() - started
    save_resnet(model_dir)
    train, test = stream(folders["train"]), stream(folders["test"])

    loader_ips = loader_throughput(train, args.workers, batches=30)
    resnet = resnet_trainer(model_dir, args.workers)
    resnet_fit = timed_fit(resnet, train, train.labels, args.steps)
    resnet_metrics = evaluate(resnet, test, test.labels)

    from tripletlab.data.idx import load_fashion_mnist

    data = load_fashion_mnist()
    mask = data.official_test
    train_index = torch.nonzero(~mask).flatten()[: args.train]
    test_index = torch.nonzero(mask).flatten()[: args.test]
    cnn = cnn_trainer()
    cnn_fit = timed_fit(cnn, data.features[train_index], data.labels[train_index], args.steps)
    cnn_metrics = evaluate(cnn, data.features[test_index], data.labels[test_index])

    result = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "threads": args.threads,
            "workers": args.workers,
            "load_average_before": round(load_before, 2),
            "load_average_after": round(os.getloadavg()[0], 2),
        },
        "setup": {
            "train_images": len(train),
            "test_images": len(test),
            "image_size": IMAGE_SIZE,
            "p": P,
            "k": K,
            "effective_batch": min(P, train.n_classes) * K,
            "steps": args.steps,
            "resnet": RESNET,
            "export_seconds": round(export_seconds, 1),
        },
        "loader_images_per_s": loader_ips,
        "streamed_resnet": resnet_fit | resnet_metrics,
        "in_memory_cnn": cnn_fit | cnn_metrics,
    }
    update_rss(result, folders, model_dir, args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))


def update_rss(result: dict, folders: dict[str, Path], model_dir: Path, args) -> None:
    small = peak_rss(folders["small"], model_dir, args.workers, args.rss_steps)
    large = peak_rss(folders["train"], model_dir, args.workers, args.rss_steps)
    result["peak_rss_mib"] = {"small": small, "large": large}
    for stale in ("rss_ratio_main", "rss_ratio_worker", "in_memory_float32_array_mib"):
        result.pop(stale, None)  # keys of an earlier version of this script
    for key in ("main_peak_mib", "worker_peak_mib", "main_rss_after_embedding_mib"):
        result[f"ratio_{key}"] = round(large[key] / small[key], 3)


def markdown(r: dict) -> str:
    s, rss = r["setup"], r["peak_rss_mib"]
    rows = [
        f"Fashion-MNIST as {s['image_size']}-px RGB PNGs: {s['train_images']} train / "
        f"{s['test_images']} test images, P×K = {s['p']}×{s['k']} (batches of "
        f"{s['effective_batch']}), {s['steps']} AdamW steps, "
        f"{r['machine']['threads']} thread(s), {r['machine']['workers']} worker(s), load "
        f"{r['machine']['load_average_before']}→{r['machine']['load_average_after']}.",
        "",
        "| path | images/s (train step) | wall s | test P@1 | test MAP@R |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, key in (
        (
            "streamed 64-px PNG → light augment, 56-px crops → transformers ResNet (random init)",
            "streamed_resnet",
        ),
        ("in-memory 28×28 tensors → built-in CNN", "in_memory_cnn"),
    ):
        v = r[key]
        rows.append(
            f"| {name} | {v['images_per_s']} | {v['seconds']} | {v['precision_at_1']} | "
            f"{v['map_at_r']} |"
        )
    rows += [
        "",
        f"DataLoader alone (decode + collate): {r['loader_images_per_s']} images/s.",
        "",
        "| images streamed | main peak RSS MiB | main RSS after the pass MiB "
        "| worker peak RSS MiB | in-memory float32 array MiB |",
        "|---:|---:|---:|---:|---:|",
    ]
    for size in ("small", "large"):
        v = rss[size]
        array = round(v["images"] * 3 * s["image_size"] ** 2 * 4 / 2**20, 1)
        after = v.get("main_rss_after_embedding_mib", float("nan"))
        rows.append(
            f"| {v['images']} | {v['main_peak_mib']:.0f} | {after:.0f} | "
            f"{v['worker_peak_mib']:.0f} | {array} |"
        )
    rows.append(
        f"\nRSS ratio {rss['large']['images']} / {rss['small']['images']} images: main peak "
        f"{r['ratio_main_peak_mib']}, main after the pass "
        f"{r.get('ratio_main_rss_after_embedding_mib')}, worker peak {r['ratio_worker_peak_mib']}."
    )
    return "\n".join(rows)


if __name__ == "__main__":
    main()
