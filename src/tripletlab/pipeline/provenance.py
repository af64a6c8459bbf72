"""Where a run came from, for ``metrics.json`` and the report: world size and global batch,
library versions, the git revision of the code (when it is a checkout), the command line,
the seed, the wall time, and the threshold ``verify`` / ``search`` will use.

Example:
    >>> from tripletlab.pipeline.config import load_config
    >>> info = provenance(load_config(None, {"seed": 3}), world_size=2, wall_seconds=1.5)
    >>> info["world_size"], info["global_batch"], info["seed"], "torch" in info["versions"]
    (2, 160, 3, True)
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from tripletlab.pipeline.config import RunConfig

__all__ = ["GIT_TIMEOUT_SECONDS", "git_revision", "library_versions", "provenance"]

#: ``git rev-parse`` must not hold up a run (a network file system, a hung git).
GIT_TIMEOUT_SECONDS = 2.0
#: The libraries whose versions change a run's numbers.
LIBRARIES = ("tripletlab", "torch", "numpy", "transformers", "kornia", "faiss-cpu")


def library_versions() -> dict[str, str]:
    """Installed versions of :data:`LIBRARIES` (absent ones left out) and Python's."""
    versions = {"python": sys.version.split()[0]}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_revision(path: Path | None = None) -> str | None:
    """The commit of the checkout holding tripletlab's source (``+dirty`` with local
    changes); None when it is not a git checkout or git is absent."""
    where = path or Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
            timeout=GIT_TIMEOUT_SECONDS, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
            capture_output=True, text=True, timeout=GIT_TIMEOUT_SECONDS, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head or None


def provenance(
    cfg: RunConfig,
    *,
    world_size: int = 1,
    wall_seconds: float | None = None,
    verification_threshold: float | None = None,
) -> dict[str, Any]:
    """The record stored under ``metrics.json["provenance"]`` and shown in the report."""
    per_rank = cfg.train.p * cfg.train.k
    return {
        "world_size": world_size,
        "batch_per_rank": per_rank,
        "global_batch": per_rank * world_size * cfg.train.accumulate_batches,
        "versions": library_versions(),
        "git_revision": git_revision(),
        "command": " ".join(sys.argv),
        "seed": cfg.seed,
        "wall_seconds": wall_seconds,
        "verification_threshold": verification_threshold,
        "metric": cfg.loss.metric,
    }
