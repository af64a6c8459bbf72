"""Matplotlib (Agg) figures of the lab, written as small PNGs.

Example:
    >>> from tripletlab.lab.experiments import surface_experiment
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "s.png"
    >>> surface_figure(surface_experiment(grid=10), path).exists()
    True
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

LABELS = {
    "mg": r"$1/M_g$ (seed)",
    "mf": r"$1/M_f$ (seed)",
    "mf_corrected": r"$1/\tilde M_f$ (corrected)",
    "eta_hat": r"$\hat\eta$ (seed)",
    "eta_hat_safe": r"$\hat\eta$ safeguarded",
    "constant": "constant",
    "inv_sqrt": r"$\eta/\sqrt{t+1}$",
    "armijo": "Armijo",
    "exact": "exact line search",
    "nesterov": "Nesterov",
    "sgd": "SGD",
    "dca": "DCA (CCP)",
    "global_l": r"$1/L$ (global)",
}
DPI = 80
DATA_NAMES = {"seed": "seed-protocol triplet", "gaussian": "Gaussian classes", "digits": "digits"}


def _save(fig: plt.Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def surface_figure(result: dict, path: Path) -> Path:
    """Figure 1: 3-d loss surfaces, rows α, columns hinge / μ values."""
    alphas, mus, values = result["alphas"], result["mus"], result["values"]
    W1, W2 = np.meshgrid(result["w1"], result["w2"], indexing="xy")
    fig = plt.figure(figsize=(3.3 * len(mus), 2.9 * len(alphas)))
    stride = max(1, len(result["w1"]) // 25)
    for i, alpha in enumerate(alphas):
        for j, mu in enumerate(mus):
            ax = fig.add_subplot(len(alphas), len(mus), i * len(mus) + j + 1, projection="3d")
            ax.plot_surface(
                W1,
                W2,
                values[i, j],
                cmap="viridis",
                rstride=stride,
                cstride=stride,
                linewidth=0,
                antialiased=False,
            )
            name = "hinge" if mu == 0 else rf"$\mu$ = {mu:g}"
            ax.set_title(rf"$\alpha$ = {alpha:g}, {name}", fontsize=9)
            ax.set_xlabel("$w_1$", fontsize=8, labelpad=-4)
            ax.set_ylabel("$w_2$", fontsize=8, labelpad=-4)
            ax.tick_params(labelsize=6, pad=0)
            ax.view_init(elev=28, azim=-60)
    fig.suptitle(f"Triplet loss surfaces, seed {result['summary']['seed']} (figure 1)", fontsize=10)
    return _save(fig, path)


def _log_plot(ax, y: np.ndarray, label: str, **style) -> None:
    t = np.arange(len(y))
    with np.errstate(all="ignore"):
        y = np.where(np.isfinite(y) & (y > 0), y, np.nan)
    ax.semilogy(t, y, label=label, **style)


FLOOR = 1e-20


def _floored(y: np.ndarray) -> np.ndarray:
    """Finite values in [0, FLOOR] (exact zeros, underflow) drawn at FLOOR; NaN/inf stay hidden."""
    return np.where(np.isfinite(y) & (y >= 0) & (y < FLOOR), FLOOR, y)


def _clip(ax) -> None:
    """Keep the y axis above FLOOR so a curve that underflows does not flatten the others."""
    low, high = ax.get_ylim()
    if low <= FLOOR * 1.0001:
        ax.set_ylim(FLOOR, high)
        ax.text(
            0.99,
            0.01,
            f"values below {FLOOR:g} drawn at {FLOOR:g}",
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=7,
            color="0.4",
        )


def descent_figure(
    result: dict, path: Path, rules: list[str] | None = None, title: str | None = None
) -> Path:
    """Figure 2: f(wᵗ), ‖wᵗ‖ and ‖∇f(wᵗ)‖² on log scales, one line per rule."""
    trajectories = result["trajectories"]
    rules = rules or list(trajectories)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for k, rule in enumerate(rules):
        traj = trajectories[rule]
        style = {"marker": "o", "markersize": 2.5, "linewidth": 1.2, "color": f"C{k}"}
        label = LABELS.get(rule, rule)
        _log_plot(axes[0], _floored(traj.loss[:, 0]), label, **style)
        _log_plot(axes[1], traj.norm[:, 0], label, **style)
        _log_plot(axes[2], _floored(traj.grad_sq[:, 0]), label, **style)
    for ax, name in zip(axes, (r"$f(w^t)$", r"$\|w^t\|$", r"$\|\nabla f(w^t)\|^2$"), strict=True):
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("iteration t")
        ax.grid(alpha=0.3, which="both")
    for ax in (axes[0], axes[2]):
        _clip(ax)
    axes[2].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    s = result["summary"]
    fig.suptitle(
        title
        or (
            f"Gradient descent, {DATA_NAMES.get(s['data'], s['data'])}, seed {s['seed']}, "
            f"m={s['m']}, d={s['d']}, "
            f"n={s['n']}, alpha={s['alpha']:g}, mu={s['mu']:g}"
        ),
        fontsize=10,
    )
    fig.tight_layout()
    return _save(fig, path)


def smoothness_figure(result: dict, path: Path, rules: list[str] | None = None) -> Path | None:
    """True local smoothness max|eig ∇²f|, max|eig ∇²g| against M_f, M_g along each trajectory."""
    bounds = result["bounds"]
    rules = [r for r in (rules or list(bounds)) if "M_f" in bounds[r]]
    if not rules:
        return None
    fig, axes = plt.subplots(1, len(rules), figsize=(4.2 * len(rules), 3.4), squeeze=False)
    styles = {
        "L_f": ("k", "-", r"true $L_f$ = max|eig $\nabla^2 f$|"),
        "M_f": ("C1", "--", r"seed $M_f$"),
        "M_f_corrected": ("C2", ":", r"corrected $\tilde M_f$"),
        "L_g": ("C4", "-", r"true $L_g$ = max eig $\nabla^2 g$"),
        "M_g": ("C0", "--", r"seed $M_g$"),
    }
    for ax, rule in zip(axes[0], rules, strict=False):
        for key, (color, ls, label) in styles.items():
            if key in bounds[rule]:
                _log_plot(ax, bounds[rule][key], label, color=color, linestyle=ls, linewidth=1.4)
        ax.set_title(f"along the {LABELS.get(rule, rule)} trajectory", fontsize=9)
        ax.set_xlabel("iteration t")
        ax.grid(alpha=0.3, which="both")
        _clip(ax)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        fontsize=8,
        loc="lower center",
        ncol=len(labels),
        bbox_to_anchor=(0.5, -0.08),
    )
    fig.suptitle(
        "Local smoothness vs the seed's bounds (a bound is valid where it lies above "
        "its true curve)",
        fontsize=10,
    )
    fig.tight_layout()
    return _save(fig, path)


def sweep_figure(result: dict, path: Path) -> Path:
    """Fraction of seeds reaching f ≤ tol and median iterations, per rule, against m."""
    rows = result["rows"]
    rules = list(dict.fromkeys(r["rule"] for r in rows))
    dims = sorted({r["m"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for k, rule in enumerate(rules):
        sel = {r["m"]: r for r in rows if r["rule"] == rule}
        frac = [sel[m]["reached"] for m in dims]
        med = [
            sel[m]["median_iterations"] if sel[m]["median_iterations"] is not None else np.nan
            for m in dims
        ]
        style = {
            "marker": "os^vD<>ph*"[k % 10],
            "color": f"C{k % 10}",
            "label": LABELS.get(rule, rule),
        }
        axes[0].plot(dims, frac, **style)
        axes[1].plot(dims, med, **style)
    cfg = result["config"]
    axes[0].set_title(
        f"fraction of {cfg['seeds']} seeds with f ≤ {cfg['tol']:g} "
        f"within {cfg['iterations']} iterations",
        fontsize=9,
    )
    axes[1].set_title("median iterations (seeds that reach it)", fontsize=9)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(dims)
        ax.set_xticklabels([str(m) for m in dims])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("dimension m")
        ax.grid(alpha=0.3)
    axes[1].set_yscale("symlog", linthresh=1)
    axes[1].set_ylim(bottom=0)
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"Sweep: alpha={cfg['alpha']:g}, mu={cfg['mu']:g}, lr={cfg['lr']:g}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def contrastive_figure(result: dict, path: Path) -> Path:
    """The contrastive loss: f and ‖∇f‖² per rule (the triplet loss on the same triplets dashed),
    and the true local smoothness along each run under the global constant L."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for k, (rule, traj) in enumerate(result["trajectories"].items()):
        style = {"linewidth": 1.2, "color": f"C{k % 10}"}
        label = LABELS.get(rule, rule)
        _log_plot(axes[0], _floored(traj.loss[:, 0]), label, **style)
        if rule in result["triplet"]:
            _log_plot(
                axes[0],
                _floored(result["triplet"][rule].loss[:, 0]),
                "_nolegend_",
                linestyle="--",
                linewidth=0.9,
                color=f"C{k % 10}",
            )
        _log_plot(axes[1], _floored(traj.grad_sq[:, 0]), label, **style)
        _log_plot(axes[2], result["local"][rule], label, **style)
    axes[2].axhline(
        result["summary"]["global_smoothness"], color="k", linestyle=":", label="global L"
    )
    titles = (
        "f (solid: contrastive, dashed: triplet)",
        r"$\|\nabla f\|^2$ (contrastive)",
        r"max|eig $\nabla^2 f$| vs global $L$",
    )
    for ax, name in zip(axes, titles, strict=True):
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("iteration t")
        ax.grid(alpha=0.3, which="both")
    _clip(axes[0])
    axes[2].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    s = result["summary"]
    fig.suptitle(
        f"Contrastive loss, {DATA_NAMES.get(s['data'], s['data'])}, seed {s['seed']}, "
        f"m={s['m']}, d={s['d']}, {s['n']} pairs, eps={s['eps']:g}, mu={s['mu']:g}",
        fontsize=10,
    )
    fig.tight_layout()
    return _save(fig, path)
