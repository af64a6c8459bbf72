"""The layering of DESIGN.md, enforced: no import from a lower layer to a higher one, and no
import cycle between modules.

Every module under ``src/tripletlab`` is parsed (``ast``, nothing is imported) and every
``import`` statement counts — at module level, inside functions (lazy imports) and under
``TYPE_CHECKING`` alike, since a lazy import is still a dependency.

Layers, lowest first (a module may import its own layer and the ones below):

0. ``errors``, ``validation``, ``atomic``, ``_moved`` — exceptions, argument checks, atomic
   file writes, old-path shims
   (the shims reach the new homes through ``importlib`` at attribute access, never by an
   import statement, which is what makes them legal in lower layers).
1. ``functional`` — pure tensor maths.
2. ``nn`` — modules over functional: losses, networks, embedding.
3. ``data``, ``train``, ``evaluate``, ``report``, ``lab``, ``testing``, ``distributed`` —
   the building blocks; ``testing`` (conformance checks of loss implementations) and
   ``distributed`` (gathering embeddings across processes) need only layers 0-2 and are
   used by users and the trainer alike, so they sit here.
4. ``pipeline``, ``estimator`` — a run (config, registries, factories, run directory, the
   verbs) and the scikit-learn estimator, which composes the same factories and trainer.
5. ``cli``, ``deploy``, ``serve`` and the package root ``tripletlab`` (its ``__init__``
   re-exports the public names, so ``import tripletlab`` from inside the library is an
   upward edge and a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "tripletlab"

LAYERS: dict[str, int] = {
    "errors": 0,
    "validation": 0,
    "_moved": 0,
    "atomic": 0,
    "functional": 1,
    "nn": 2,
    "data": 3,
    "train": 3,
    "evaluate": 3,
    "report": 3,
    "lab": 3,
    "testing": 3,
    "distributed": 3,
    "pipeline": 4,
    "estimator": 4,
    "cli": 5,
    "commands": 5,
    "deploy": 5,
    "serve": 5,
}
ROOT_LAYER = 5


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _resolve(name: str, node: ast.ImportFrom | ast.Import, alias: ast.alias) -> str | None:
    """The tripletlab module an import statement in module ``name`` depends on."""
    if isinstance(node, ast.Import):
        target = alias.name
    else:
        base = node.module or ""
        if node.level:
            anchor = name.split(".") if _is_package(name) else name.split(".")[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        candidate = f"{base}.{alias.name}"
        target = candidate if candidate in MODULES else base
    if target != PACKAGE and not target.startswith(PACKAGE + "."):
        return None
    while target not in MODULES and "." in target:  # `import tripletlab.x.y` of a name
        target = target.rsplit(".", 1)[0]
    return target


def _edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    target = _resolve(name, node, alias)
                    if target is not None and target != name:
                        targets.add(target)
        graph[name] = targets
    return graph


GRAPH = _edges()


def layer(module: str) -> int:
    """The layer of a tripletlab module (KeyError for a top-level name not placed yet)."""
    if module == PACKAGE:
        return ROOT_LAYER
    return LAYERS[module.split(".")[1]]


def test_every_module_has_a_layer() -> None:
    unplaced = sorted({m.split(".")[1] for m in MODULES if m != PACKAGE} - set(LAYERS))
    assert not unplaced, f"place these in LAYERS (and in DESIGN.md's layout): {unplaced}"


def test_no_import_goes_up_a_layer() -> None:
    upward = [
        f"{source} (layer {layer(source)}) imports {target} (layer {layer(target)})"
        for source, targets in GRAPH.items()
        for target in sorted(targets)
        if layer(target) > layer(source)
    ]
    assert not upward, "\n".join(upward)


def _cycle_from(start: str) -> list[str] | None:
    """A shortest import cycle through ``start`` (breadth-first), or None."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for module in frontier:
            for target in sorted(GRAPH.get(module, ())):
                if target == start:
                    return [*paths[module], start]
                if target not in paths:
                    paths[target] = [*paths[module], target]
                    following.append(target)
        frontier = following
    return None


def test_no_import_cycle() -> None:
    cycles = {tuple(c) for m in GRAPH if (c := _cycle_from(m)) is not None}
    shortest = sorted(cycles, key=len)[:5]
    assert not shortest, "import cycles:\n" + "\n".join(" -> ".join(c) for c in shortest)


@pytest.mark.parametrize(
    "source, statement, expected",
    [
        (
            "tripletlab.data.datasets",
            "from tripletlab.data import arrays",
            "tripletlab.data.arrays",
        ),
        ("tripletlab.train.factory", "import tripletlab", "tripletlab"),
        ("tripletlab.nn.losses", "from . import loss_base", "tripletlab.nn.loss_base"),
        (
            "tripletlab.nn.losses",
            "from ..functional.triplet import x",
            "tripletlab.functional.triplet",
        ),
        ("tripletlab.pipeline.data", "from tripletlab.data import load_dataset", "tripletlab.data"),
        ("tripletlab.cli", "import numpy", None),
    ],
)
def test_imports_are_resolved_to_modules(source: str, statement: str, expected: str | None) -> None:
    # The checks above are only as good as this resolution, so it is tested on its own.
    node = ast.parse(statement).body[0]
    assert isinstance(node, (ast.Import, ast.ImportFrom))
    assert _resolve(source, node, node.names[0]) == expected


def test_an_upward_import_would_be_caught() -> None:
    assert layer("tripletlab.pipeline.training") > layer("tripletlab.train.trainer")
    assert layer("tripletlab") > layer("tripletlab.pipeline")
    assert layer("tripletlab.validation") < layer("tripletlab.functional.triplet")
