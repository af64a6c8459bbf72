"""Speed and memory of the batch triplet losses against pytorch-metric-learning (PML).

    python -m benchmarks.batch_losses            # the full grid (B up to 8192, K ∈ {4, 16})
    python -m benchmarks.batch_losses --quick    # B ∈ {256, 1024}, K = 4, fewer repeats

Every (method, B, K) runs in a fresh subprocess with ``torch.set_num_threads(2)`` in the
environment a user has (``--omp-wait-policy`` sets ``OMP_WAIT_POLICY`` for every method alike,
only when asked; the README's figures are measured without it) on random
(B, 128) float32 embeddings of a P×K batch: the median forward+backward time over a few
repeats (after one warm-up call; a configuration whose warm-up call alone exceeds
``--max-seconds`` is timed by that single call, flagged ``cold_single_call``) and the peak
extra resident memory (peak RSS minus the RSS
after a call on a tiny batch, which initialises thread pools and library workspaces). Methods:

* ``floor``          — the B×B squared-distance matrix ‖x‖² + ‖y‖² − 2xyᵀ, forward+backward
  (a GEMM and its two backward GEMMs): what any batch loss must at least pay;
* ``tl_all``, ``tl_hard``, ``tl_semi`` — tripletlab's batch-all (hinge, mean_active),
  batch-hard and FaceNet semi-hard losses;
* ``pml_all``        — PML ``TripletMarginLoss`` without a miner (every triplet);
* ``pml_miner_all`` / ``pml_miner_semihard`` / ``pml_miner_hard`` — PML
  ``TripletMarginMiner`` + ``TripletMarginLoss``;
* ``pml_batch_hard`` — PML ``BatchHardMiner`` + ``TripletMarginLoss``.

PML uses ``LpDistance(power=2, normalize_embeddings=False)`` and margin 0.2 (the FaceNet form,
the same loss as tripletlab's). A configuration whose estimated memory exceeds the limit is
not run; the estimate is recorded. Results go to ``benchmarks/results/batch_losses.json`` and
a markdown table, also written between the markers of the README's "Performance" section.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks._steps import (  # noqa: E402  (the benchmark runs as a script too)
    PML_METHODS,
    SAME_LOSS_PEERS,
    ST_METHODS,
    TL_METHODS,
    loss_step,
)

D = 128
METHODS = TL_METHODS + ST_METHODS + PML_METHODS
FULL_B = (256, 1024, 2048, 4096, 8192)
FULL_K = (4, 16)
#: The issue's small-batch grid (K ≤ B/2): where most people train.
SMALL_B = (32, 64, 128, 256)
SMALL_K = (2, 4, 8, 16, 32)
DRAFT = ROOT / "docs" / "drafts" / "batch_losses_table.md"

RESULTS = ROOT / "benchmarks" / "results" / "batch_losses.json"
README = ROOT / "README.md"
START_MARK = "<!-- batch-losses-benchmark:start -->"
END_MARK = "<!-- batch-losses-benchmark:end -->"
ISSUE_PML_B4096_K16 = {"median_ms": 17000.0, "peak_extra_mb": 13000.0}


# ----------------------------------------------------------------------------- estimates


def num_triplets(b: int, k: int) -> int:
    return b * (k - 1) * (b - k)


def estimate_bytes(method: str, b: int, k: int) -> int:
    """A rough upper estimate of a method's peak extra memory, to skip configs that can't fit.

    PML builds every triplet's indices: a B×B×B bool mask below B³ < 2³¹ (B ≤ 1290), and
    about 56 bytes per triplet for the loss (three int64 indices, gathered distances and
    losses, temporaries); its miners also keep the mined subset and margins (≈ 80 bytes per
    triplet). Calibrated on the issue's measurements (B=1024 K=4: +1.3 GB; B=4096 K=16: +13 GB).
    tripletlab and the floor are O(B²): a few float32 B×B matrices plus the row-chunk budget;
    so are sentence-transformers' batch-hard and semi-hard (its batch-all builds B×B×B).
    """
    square = 4 * b * b
    if method == "floor":
        return 4 * square
    if method.startswith("tl_"):
        return 6 * square + 256 * 2**20
    if method in ("st_hard", "st_semi"):
        # B×B float matrices only (masks, a sort's values and int64 indices): measured
        # st_semi B=4096 K=4 +1.2 GB = 18 bytes an entry
        return 24 * b * b
    per_triplet = 56 if method == "pml_all" else 80
    if method == "pml_batch_hard":
        return 6 * square
    cube = b**3 if b**3 < 2**31 - 1 else 0
    return cube + per_triplet * num_triplets(b, k) + 4 * square


# ----------------------------------------------------------------------------- worker


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(
    method: str, b: int, k: int, repeats: int, max_seconds: float, metric: str, threads: int = 2
) -> dict:
    import torch

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    # L2-normalised rows (the issue's inputs): every method sees the same tensor
    x = torch.nn.functional.normalize(torch.randn(b, D, generator=g), dim=1)
    y = (torch.arange(b) // k)[torch.randperm(b, generator=g)]
    step = loss_step(method, metric)
    # a small call first: thread pools and library workspaces are not the method's memory
    small = min(b, 4 * k)
    step(x[:small].clone().requires_grad_(), y[:small]).backward()
    rss_before = _rss_bytes()
    times = []
    cpu_times = []
    started = time.perf_counter()
    cold = False
    value = None
    for i in range(repeats + 1):
        xx = x.clone().requires_grad_()
        t0, c0 = time.perf_counter(), time.process_time()
        loss = step(xx, y)
        loss.backward()
        elapsed = time.perf_counter() - t0
        cpu_elapsed = time.process_time() - c0
        value = float(loss.detach())
        if i > 0:  # the first call is a warm-up ...
            times.append(elapsed)
            cpu_times.append(cpu_elapsed)
        elif elapsed > max_seconds:  # ... unless it alone exceeds the time budget
            times.append(elapsed)
            cpu_times.append(cpu_elapsed)
            cold = True
            break
        if len(times) >= 2 and time.perf_counter() - started > max_seconds:
            break
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "times_ms": [round(1000 * t, 2) for t in times],
        "median_ms": round(1000 * statistics.median(times), 2),
        # CPU time of the process (all threads): steadier than wall time on a shared machine
        "median_cpu_ms": round(1000 * statistics.median(cpu_times), 2),
        "peak_extra_mb": round(max(0, peak - rss_before) / 2**20, 1),
        "cold_single_call": cold,
        "loss": value,
    }


# ----------------------------------------------------------------------------- driver


def run_config(method: str, b: int, k: int, args) -> dict:
    record = {"method": method, "B": b, "K": k, "D": D, "metric": args.metric}
    estimate = estimate_bytes(method, b, k)
    record["estimate_mb"] = round(estimate / 2**20)
    limit = args.pml_memory_limit_gb if method.startswith("pml") else args.memory_limit_gb
    if estimate > limit * 2**30:
        record["status"] = "skipped"
        record["reason"] = f"estimated {estimate / 2**30:.1f} GB > limit {limit:g} GB"
        return record
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.batch_losses",
        "--worker",
        method,
        str(b),
        str(k),
        str(args.repeats),
        str(args.max_seconds),
        args.metric,
        str(args.threads),
    ]
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if args.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy
    try:
        done = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=args.timeout
        )
    except subprocess.TimeoutExpired:
        record["status"] = "failed"
        record["reason"] = f"timeout after {args.timeout} s"
        return record
    if done.returncode != 0:
        record["status"] = "failed"
        record["reason"] = (done.stderr.strip().splitlines() or ["?"])[-1][:300]
        return record
    record.update(json.loads(done.stdout.strip().splitlines()[-1]))
    record["status"] = "ok"
    return record


def _find(records, method, b, k):
    for r in records:
        if r["method"] == method and r["B"] == b and r["K"] == k and r["status"] == "ok":
            return r
    return None


def _skipped(records, method, b, k):
    for r in records:
        if r["method"] == method and r["B"] == b and r["K"] == k and r["status"] != "ok":
            return r
    return None


def targets(records) -> list[dict]:
    """The issue's targets as ratios from this run (None where a side did not run)."""
    out = []

    def ratio(num, den, key):
        return round(num[key] / den[key], 2) if num and den and den[key] > 0 else None

    tl, pml = _find(records, "tl_all", 1024, 4), _find(records, "pml_all", 1024, 4)
    out.append(
        {
            "target": "batch-all B=1024 K=4: ≥ 40× faster than PML batch-all",
            "value": ratio(pml, tl, "median_ms"),
            "goal": ">= 40",
            "met": _met(ratio(pml, tl, "median_ms"), 40, True),
        }
    )
    out.append(
        {
            "target": "batch-all B=1024 K=4: ≥ 20× less extra memory than PML batch-all",
            "value": ratio(pml, tl, "peak_extra_mb"),
            "goal": ">= 20",
            "met": _met(ratio(pml, tl, "peak_extra_mb"), 20, True),
        }
    )
    tl, pml = _find(records, "tl_all", 4096, 16), _find(records, "pml_all", 4096, 16)
    value = ratio(pml, tl, "median_ms")
    note = None
    if value is None and tl:
        skipped = _skipped(records, "pml_all", 4096, 16)
        reason = skipped["reason"] if skipped else "not run"
        value_issue = round(ISSUE_PML_B4096_K16["median_ms"] / tl["median_ms"], 1)
        note = (
            f"PML not run here ({reason}); against the issue's measured ~17 s (not this "
            f"run): {value_issue}×"
        )
    out.append(
        {
            "target": "batch-all B=4096 K=16: ≥ 20× faster than PML without a miner",
            "value": value,
            "goal": ">= 20",
            "met": _met(value, 20, True),
            "note": note,
        }
    )
    tl, floor = _find(records, "tl_all", 8192, 16), _find(records, "floor", 8192, 16)
    out.append(
        {
            "target": "batch-all B=8192 K=16: ≤ 2× the distance-matrix floor",
            "value": ratio(tl, floor, "median_ms"),
            "goal": "<= 2",
            "met": _met(ratio(tl, floor, "median_ms"), 2, False),
        }
    )
    out.append(
        {
            "target": "batch-all B=8192 K=16: < 2 GB extra memory",
            "value": round(tl["peak_extra_mb"] / 1024, 2) if tl else None,
            "goal": "< 2 GB",
            "met": _met(round(tl["peak_extra_mb"] / 1024, 2) if tl else None, 2, False),
        }
    )
    tl, pml = _find(records, "tl_semi", 4096, 4), _find(records, "pml_miner_semihard", 4096, 4)
    out.append(
        {
            "target": "semi-hard B=4096 K=4: ≥ 10× faster than PML semihard miner + loss",
            "value": ratio(pml, tl, "median_ms"),
            "goal": ">= 10",
            "met": _met(ratio(pml, tl, "median_ms"), 10, True),
        }
    )
    tl16 = _find(records, "tl_semi", 4096, 16)
    pml16 = _find(records, "pml_miner_semihard", 4096, 16)
    out.append(
        {
            "target": "semi-hard runs at B=4096 K=16 (PML's miner cannot)",
            "value": tl16["median_ms"] if tl16 else None,
            "goal": "runs",
            "met": tl16 is not None,
            "note": "PML: "
            + (_skipped(records, "pml_miner_semihard", 4096, 16) or {}).get(
                "reason", "ran" if pml16 else "not run"
            ),
        }
    )
    for k in FULL_K:
        tl, floor = _find(records, "tl_hard", 4096, k), _find(records, "floor", 4096, k)
        pml = _find(records, "pml_batch_hard", 4096, k)
        out.append(
            {
                "target": f"batch-hard B=4096 K={k}: ≤ 1.5× the floor",
                "value": ratio(tl, floor, "median_ms"),
                "goal": "<= 1.5",
                "met": _met(ratio(tl, floor, "median_ms"), 1.5, False),
                "note": f"PML BatchHardMiner: {ratio(pml, floor, 'median_ms')}× the floor",
            }
        )
    return out


def _met(value, bound, at_least):
    if value is None:
        return None
    return value >= bound if at_least else value <= bound


def markdown(result: dict) -> str:
    records = result["records"]
    lines = [
        f"Measured {result['machine']['date']} on {result['machine']['cpu']} "
        f"({result['machine']['threads']} threads, load average at start "
        f"{result['machine']['load_start']}, at end {result['machine']['load_end']}; other "
        "jobs shared the machine), torch "
        f"{result['machine']['torch']}, PML {result['machine']['pml']}. D = 128, float32, "
        "median forward+backward time, peak extra RSS, "
        + (
            f"`OMP_WAIT_POLICY={result['machine']['omp_wait_policy']}`. "
            if result["machine"].get("omp_wait_policy")
            else "default environment (no `OMP_WAIT_POLICY`). "
        )
        + "`—` = skipped "
        "(estimated memory above the limit; the estimate is shown) or not run.",
        "",
    ]
    ks = sorted({r["K"] for r in records})
    bs = sorted({r["B"] for r in records})
    methods = [m for m in METHODS if any(r["method"] == m for r in records)]
    for k in ks:
        lines += [f"**K = {k}** (time / extra memory)", ""]
        lines.append("| method | " + " | ".join(f"B={b}" for b in bs) + " |")
        lines.append("|---|" + "---|" * len(bs))
        for m in methods:
            cells = []
            for b in bs:
                r = _find(records, m, b, k)
                if r:
                    cold = "¹" if r.get("cold_single_call") else ""
                    cells.append(f"{_ms(r['median_ms'])}{cold} / {_mb(r['peak_extra_mb'])}")
                else:
                    s = _skipped(records, m, b, k)
                    cells.append(f"— (est. {_mb(s['estimate_mb'])})" if s else "")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    if any(r.get("cold_single_call") for r in records):
        lines += ["¹ one cold call (slower than the time budget), no warm-up.", ""]
    lines += ["**Targets of the issue** (ratios from this run)", ""]
    lines += ["| target | measured | goal | met |", "|---|---|---|---|"]
    for t in result["targets"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        value = "—" if t["value"] is None else f"{t['value']}"
        note = f" ({t['note']})" if t.get("note") else ""
        lines.append(f"| {t['target']} | {value}{note} | {t['goal']} | {met} |")
    return "\n".join(lines) + "\n"


def peer_tables(records) -> str:
    """tripletlab against the fastest peer computing the same loss, and every loss value."""
    lines = [
        "**tripletlab / fastest same-loss peer** (median wall-time ratio, < 1 is faster; the "
        "same for CPU time, steadier on a shared machine; extra-memory ratio, +1 MB each)",
        "",
        "| loss | B | K | tripletlab | fastest peer | time ratio | CPU-time ratio | memory ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    values = ["", "**Loss values** (same definition ⇒ same number)", ""]
    values += ["| loss | B | K | values |", "|---|---|---|---|"]
    for tl, peers in SAME_LOSS_PEERS.items():
        for k, b in sorted({(r["K"], r["B"]) for r in records}):
            mine = _find(records, tl, b, k)
            if not mine:
                continue
            found = [r for r in (_find(records, p, b, k) for p in peers) if r]
            shown = [f"{tl} {mine['loss']:.6f}"] + [f"{r['method']} {r['loss']:.6f}" for r in found]
            values.append(f"| {tl} | {b} | {k} | " + ", ".join(shown) + " |")
            if not found:
                lines.append(f"| {tl} | {b} | {k} | {_ms(mine['median_ms'])} | — | — | — | — |")
                continue
            best = min(found, key=lambda r: r["median_ms"])
            time_ratio = mine["median_ms"] / max(best["median_ms"], 1e-9)
            best_cpu = min(found, key=lambda r: r.get("median_cpu_ms", math.inf))
            cpu_ratio = mine.get("median_cpu_ms", math.nan) / max(
                best_cpu.get("median_cpu_ms", math.nan), 1e-9
            )
            memory_ratio = (mine["peak_extra_mb"] + 1) / (best["peak_extra_mb"] + 1)
            lines.append(
                f"| {tl} | {b} | {k} | {_ms(mine['median_ms'])} / {_mb(mine['peak_extra_mb'])} | "
                f"{best['method']} {_ms(best['median_ms'])} / {_mb(best['peak_extra_mb'])} | "
                f"{time_ratio:.2f} | {cpu_ratio:.2f} | {memory_ratio:.2f} |"
            )
    return "\n".join(lines + values) + "\n"


def _ms(ms: float) -> str:
    return f"{ms / 1000:.2f} s" if ms >= 1000 else f"{ms:.1f} ms"


def _mb(mb: float) -> str:
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def _machine() -> dict:
    import torch

    try:
        import pytorch_metric_learning as pml

        pml_version = pml.__version__
    except ImportError:
        pml_version = None
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "threads": 2,
        "torch": torch.__version__,
        "pml": pml_version,
        "python": platform.python_version(),
        "load_start": _load(),
    }


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def write_readme(table: str, readme: Path) -> bool:
    text = readme.read_text()
    if START_MARK not in text or END_MARK not in text:
        return False
    head, rest = text.split(START_MARK, 1)
    _, tail = rest.split(END_MARK, 1)
    readme.write_text(head + START_MARK + "\n" + table + END_MARK + tail)
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="B ∈ {256, 1024}, K = 4")
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=None)
    parser.add_argument("--ks", type=int, nargs="*", default=None)
    parser.add_argument("--methods", nargs="*", default=None, choices=METHODS)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per config")
    parser.add_argument("--max-seconds", type=float, default=8.0, help="stop repeating after")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per config")
    parser.add_argument("--memory-limit-gb", type=float, default=10.0)
    parser.add_argument("--pml-memory-limit-gb", type=float, default=10.0)
    parser.add_argument(
        "--omp-wait-policy",
        default=None,
        choices=("PASSIVE", "ACTIVE"),
        help="set OMP_WAIT_POLICY for every method (default: the environment a user has)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--no-readme", action="store_true", help="don't update README.md")
    parser.add_argument(
        "--metric", default="euclidean", choices=("sqeuclidean", "euclidean", "cosine")
    )
    parser.add_argument("--small", action="store_true", help="the small-B grid: B ≤ 256")
    parser.add_argument("--draft", type=Path, default=DRAFT, help="markdown table written here")
    parser.add_argument(
        "--worker", nargs=7, metavar=("METHOD", "B", "K", "REPEATS", "SECS", "METRIC", "THREADS")
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch threads per configuration (1 on a machine shared with other jobs: a "
        "spinning OpenMP team waiting for a descheduled thread swamps every timing)",
    )
    args = parser.parse_args(argv)
    if args.worker:
        method, b, k, repeats, secs, metric, threads = args.worker
        result = worker(method, int(b), int(k), int(repeats), float(secs), metric, int(threads))
        print(json.dumps(result))
        return
    default_b = SMALL_B if args.small else FULL_B
    default_k = SMALL_K if args.small else FULL_K
    bs = args.batch_sizes or ((256, 1024) if args.quick else default_b)
    ks = args.ks or ((4,) if args.quick else default_k)
    if args.quick:
        args.repeats = min(args.repeats, 3)
    methods = args.methods or METHODS
    result = {"machine": _machine(), "records": []}
    result["machine"]["omp_wait_policy"] = args.omp_wait_policy
    result["machine"]["threads"] = args.threads
    for k in ks:
        for b in bs:
            if 2 * k > b:
                continue
            for method in methods:
                record = run_config(method, b, k, args)
                result["records"].append(record)
                shown = (
                    f"{record['median_ms']:.1f} ms, +{record['peak_extra_mb']:.0f} MB"
                    if record["status"] == "ok"
                    else f"{record['status']}: {record.get('reason')}"
                )
                print(f"{method:>20} B={b:<5} K={k:<3} {shown}", flush=True)
    result["machine"]["load_end"] = _load()
    result["targets"] = targets(result["records"])
    table = markdown(result) + "\n" + peer_tables(result["records"])
    result["markdown"] = table
    args.draft.parent.mkdir(parents=True, exist_ok=True)
    args.draft.write_text(
        f"# Batch losses ({args.metric}, CPU; CUDA unmeasured: no GPU was available)\n\n" + table
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(table)
    if not args.no_readme and not args.quick and not args.small and write_readme(table, README):
        print(f"README.md performance table updated; results in {args.output}")


if __name__ == "__main__":
    main()
