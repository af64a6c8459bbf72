"""faiss IVF evaluation before/after the index reuse and the key-sort ordering (issue 17),
side by side in one process: ``old`` is ``knn_faiss.py`` of commit 17717ae (index rebuilt by
every search call, candidates re-ranked by gathering their vectors), ``new`` the current one.

What is timed is what ``evaluate --approximate ivf`` does: the retrieval metrics of all N
queries, then the exact-vs-approximate gap on 2,000 sampled queries (which searches the
approximate index again). Data: N × 128 float32 from N/100 Gaussian clusters (R = 99),
spread 1.5. Usage (from the repository root, under the bench lock)::

    git show 17717ae:src/tripletlab/evaluate/knn_faiss.py > /tmp/old_knn_faiss.py
    PYTHONPATH=src:/tmp python docs/drafts/ivf_before_after.py [N]
"""

from __future__ import annotations

import json
import os
import sys
import time

import old_knn_faiss
import torch

from tripletlab.evaluate import approximation_gap, retrieval_metrics
from tripletlab.evaluate.knn_faiss import FaissKNN

GAP_QUERIES = 2_000
ROUNDS = 2  # old, new, old, new: the machine is shared; the faster round of each is kept


def data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % (n // 100)
    centres = torch.randn(n // 100, 128, generator=generator)
    return centres[labels] + 1.5 * torch.randn(n, 128, generator=generator), labels


def timed(backend: object, x: torch.Tensor, y: torch.Tensor) -> dict:
    started, cpu = time.perf_counter(), time.process_time()
    metrics = retrieval_metrics(x, y, ks=(1,), knn_k=1, knn=backend)
    search_s = time.perf_counter() - started
    gap = approximation_gap(x, y, backend, n_queries=GAP_QUERIES, ks=(1,), knn_k=1)
    return {
        "metrics_seconds": round(search_s, 2),
        "with_gap_seconds": round(time.perf_counter() - started, 2),
        "cpu_seconds": round(time.process_time() - cpu, 2),
        "map_at_r": metrics["map_at_r"],
        "map_at_r_gap": gap["gap"]["map_at_r"],
    }


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    x, y = data(n)
    found: dict = {"n": n, "threads": torch.get_num_threads()}
    for _ in range(ROUNDS):
        for name, make in (("old", old_knn_faiss.FaissKNN), ("new", FaissKNN)):
            run = timed(make("ivf"), x, y)
            best = found.get(name)
            if best is None or run["with_gap_seconds"] < best["with_gap_seconds"]:
                found[name] = run
    found["speedup_with_gap"] = found["old"]["with_gap_seconds"] / found["new"]["with_gap_seconds"]
    found["load_average_after"] = os.getloadavg()
    print(json.dumps(found, indent=2))


if __name__ == "__main__":
    main()
