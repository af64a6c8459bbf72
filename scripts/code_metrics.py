"""Line counts of the largest modules and functions of a source tree (a markdown table).

Usage: ``python scripts/code_metrics.py src/tripletlab`` (docstrings and comments included).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

TOP = 15  # rows per table: enough to see every file near the ~400-line guideline


def measure(root: Path) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(lines, module) and (lines, module:function) pairs, largest first."""
    files, functions = [], []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        name = str(path.relative_to(root))
        files.append((len(text.splitlines()), name))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                end = node.end_lineno or node.lineno
                functions.append((end - node.lineno + 1, f"{name}:{node.name}"))
    return sorted(files, reverse=True), sorted(functions, reverse=True)


def main(root: Path) -> None:
    files, functions = measure(root)
    print("| file | lines |\n|---|---:|")
    for lines, name in files[:TOP]:
        print(f"| {name} | {lines} |")
    print("\n| function | lines |\n|---|---:|")
    for lines, name in functions[:TOP]:
        print(f"| {name} | {lines} |")
    print(f"\ntotal: {sum(n for n, _ in files)} lines in {len(files)} modules")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "src/tripletlab"))
