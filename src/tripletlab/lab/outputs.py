"""Writing the lab's results to a folder: PNG figures, CSV of every curve, JSON, summary.md.

Example:
    >>> import tempfile
    >>> from tripletlab.lab.experiments import descent_experiment
    >>> files = write_descent(descent_experiment(iterations=2), tempfile.mkdtemp())
    >>> sorted(p.name for p in files)[:2]
    ['curves.csv', 'descent.json']
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from tripletlab.lab import figures, summary
from tripletlab.lab.step_rules import SEED_RULES


def _json_default(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def _finite(x):
    """Non-finite floats become null, so the JSON stays standard."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, (float, np.floating)) and not np.isfinite(x):
        return None
    return x


def _write_json(data: dict, path: Path) -> Path:
    text = json.dumps(_finite(data), indent=2, default=_json_default, allow_nan=False)
    path.write_text(text + "\n")
    return path


def _num(x: float) -> str:
    return repr(float(x)) if np.isfinite(x) else str(float(x))


def write_surface(result: dict, out: str | Path) -> list[Path]:
    """figure1_surfaces.png, surface.csv (w1, w2, one column per panel), surface.json, summary.md."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    values = result["values"]
    names = [
        f"alpha={a:g}_{'hinge' if m == 0 else f'mu={m:g}'}"
        for a in result["alphas"]
        for m in result["mus"]
    ]
    flat = values.reshape(len(names), -1)
    W1, W2 = np.meshgrid(result["w1"], result["w2"], indexing="xy")
    with open(out / "surface.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["w1", "w2", *names])
        for k, (a, b) in enumerate(zip(W1.ravel(), W2.ravel(), strict=False)):
            writer.writerow([_num(a), _num(b), *(_num(v) for v in flat[:, k])])
    files = [
        figures.surface_figure(result, out / "figure1_surfaces.png"),
        out / "surface.csv",
        _write_json(result["summary"], out / "surface.json"),
    ]
    (out / "summary.md").write_text(summary.surface_markdown(result))
    return [*files, out / "summary.md"]


def write_descent(result: dict, out: str | Path) -> list[Path]:
    """descent.png (+ figure2_seed_rules.png and smoothness.png when they apply), curves.csv
    (one row per rule and iteration: f, ‖w‖, ‖∇f‖², η, true and bounded smoothness),
    descent.json, summary.md."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    trajectories, bounds = result["trajectories"], result["bounds"]
    keys = sorted({k for b in bounds.values() for k in b})
    with open(out / "curves.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["rule", "t", "f", "norm", "grad_sq", "step", *keys])
        for rule, traj in trajectories.items():
            for t in range(len(traj.loss)):
                step = traj.step[t, 0] if t < len(traj.step) else np.nan
                extra = [_num(bounds[rule][k][t]) if k in bounds[rule] else "" for k in keys]
                writer.writerow(
                    [
                        rule,
                        t,
                        _num(traj.loss[t, 0]),
                        _num(traj.norm[t, 0]),
                        _num(traj.grad_sq[t, 0]),
                        _num(step),
                        *extra,
                    ]
                )
    files = [out / "curves.csv", figures.descent_figure(result, out / "descent.png")]
    seed_rules = [r for r in SEED_RULES if r in trajectories]
    if len(seed_rules) == len(SEED_RULES) and len(trajectories) > len(seed_rules):
        files.append(
            figures.descent_figure(
                result,
                out / "figure2_seed_rules.png",
                seed_rules,
                title="Figure 2 reproduced: the seed's three step rules",
            )
        )
    smooth = figures.smoothness_figure(
        result, out / "smoothness.png", [r for r in trajectories if r in SEED_RULES] or None
    )
    if smooth is not None:
        files.append(smooth)
    files.append(_write_json(result["summary"], out / "descent.json"))
    (out / "summary.md").write_text(summary.descent_markdown(result))
    return [*files, out / "summary.md"]


def write_sweep(result: dict, out: str | Path) -> list[Path]:
    """sweep.png, sweep.csv (one row per dimension and rule), sweep.json, sweep.md / summary.md."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = result["rows"]
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(out / "sweep.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    text = summary.sweep_markdown(result)
    (out / "summary.md").write_text(text)
    return [
        figures.sweep_figure(result, out / "sweep.png"),
        out / "sweep.csv",
        _write_json(
            {"config": result["config"], "instances": result["instances"], "rows": rows},
            out / "sweep.json",
        ),
        out / "summary.md",
    ]


def write_claims(report: dict, out: str | Path) -> list[Path]:
    """claims.json (every count) and summary.md (one verdict per claim)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(summary.claims_markdown(report))
    return [_write_json(report, out / "claims.json"), out / "summary.md"]


def write_data_sweep(result: dict, out: str | Path) -> list[Path]:
    """data_sweep.csv (one row per setting and rule), data_sweep.json, summary.md."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = result["rows"]
    with open(out / "data_sweep.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    (out / "summary.md").write_text(summary.data_sweep_markdown(result))
    return [
        out / "data_sweep.csv",
        _write_json(result, out / "data_sweep.json"),
        out / "summary.md",
    ]


def write_contrastive(result: dict, out: str | Path) -> list[Path]:
    """contrastive.png, curves.csv (rule, t, f, ‖∇f‖², local smoothness, triplet f),
    contrastive.json, summary.md."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "curves.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["rule", "t", "f", "grad_sq", "local_smoothness", "triplet_f"])
        for rule, traj in result["trajectories"].items():
            triplet = result["triplet"].get(rule)
            for t in range(len(traj.loss)):
                writer.writerow(
                    [
                        rule,
                        t,
                        _num(traj.loss[t, 0]),
                        _num(traj.grad_sq[t, 0]),
                        _num(result["local"][rule][t]),
                        _num(triplet.loss[t, 0]) if triplet is not None else "",
                    ]
                )
    (out / "summary.md").write_text(summary.contrastive_markdown(result))
    return [
        figures.contrastive_figure(result, out / "contrastive.png"),
        out / "curves.csv",
        _write_json(result["summary"], out / "contrastive.json"),
        out / "summary.md",
    ]
