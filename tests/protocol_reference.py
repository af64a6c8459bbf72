"""Brute-force references of the field protocols: literal per-query loops, as the official
scripts (Market-1501's evaluation.m / torchreid's eval_market1501) write them."""

from __future__ import annotations

import numpy as np


def reid_reference(dist, q_pids, g_pids, q_cams=None, g_cams=None, max_rank=10, junk=-1):
    """torchreid's eval_market1501 loop with the MATLAB junk rule (gallery −1 ignored)."""
    cmc_all, aps, inps, trapezoid = [], [], [], []
    for i in range(len(q_pids)):
        order = np.argsort(dist[i], kind="stable")
        remove = g_pids[order] == junk
        if q_cams is not None:
            remove |= (g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i])
        raw = (g_pids[order] == q_pids[i])[~remove].astype(int)
        if not raw.any():
            continue
        cmc = raw.cumsum()
        last = np.max(np.where(raw == 1))
        inps.append(cmc[last] / (last + 1.0))
        cmc[cmc > 1] = 1
        cmc_all.append(np.pad(cmc, (0, max(0, max_rank - len(cmc))), mode="edge")[:max_rank])
        hits = raw.cumsum()
        precision = hits / (np.arange(len(raw)) + 1.0)
        aps.append((precision * raw).sum() / raw.sum())
        trapezoid.append(_trapezoid_ap(raw))
    return {
        "cmc": np.mean(cmc_all, axis=0),
        "map": float(np.mean(aps)),
        "minp": float(np.mean(inps)),
        "map_trapezoid": float(np.mean(trapezoid)),
        "n_queries": len(aps),
    }


def _trapezoid_ap(raw):
    """Market-1501's compute_AP.m, junk already removed."""
    ngood = raw.sum()
    ap, good_now, old_recall, old_precision = 0.0, 0, 0.0, 1.0
    for n, is_good in enumerate(raw):
        if is_good:
            good_now += 1
        recall = good_now / ngood
        precision = good_now / (n + 1)
        ap += (recall - old_recall) * (old_precision + precision) / 2
        old_recall, old_precision = recall, precision
        if good_now == ngood:
            break
    return ap


def dml_reference(dist, q_labels, g_labels, exclude_self=False, ks=(1, 2, 4)):
    """P@1, R-precision, MAP@R, Recall@k by sorting every row."""
    p1, rp, mapr, recall = [], [], [], {k: [] for k in ks}
    for i in range(len(q_labels)):
        keep = np.ones(len(g_labels), dtype=bool)
        if exclude_self:
            keep[i] = False
        idx = np.flatnonzero(keep)
        order = idx[np.argsort(dist[i][idx], kind="stable")]
        rel = (g_labels[order] == q_labels[i]).astype(float)
        r = int(rel.sum())
        if r == 0:
            continue
        p1.append(rel[0])
        rp.append(rel[:r].sum() / r)
        precision = rel.cumsum() / np.arange(1, len(rel) + 1)
        mapr.append((precision[:r] * rel[:r]).sum() / r)
        for k in ks:
            recall[k].append(float(rel[:k].any()))
    out = {"precision_at_1": np.mean(p1), "r_precision": np.mean(rp), "map_at_r": np.mean(mapr)}
    out.update({f"recall_at_{k}": np.mean(v) for k, v in recall.items()})
    return out
