"""Largest files and functions under src/ (line counts)."""

import ast
import pathlib
import sys

root = pathlib.Path(sys.argv[1])
files, funcs = [], []
for p in sorted(root.rglob("*.py")):
    text = p.read_text()
    files.append((len(text.splitlines()), str(p.relative_to(root))))
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            funcs.append((node.end_lineno - node.lineno + 1, f"{p.relative_to(root)}:{node.name}"))
files.sort(reverse=True)
funcs.sort(reverse=True)
print("| file | lines |\n|---|---:|")
for n, f in files[:15]:
    print(f"| {f} | {n} |")
print("\n| function | lines |\n|---|---:|")
for n, f in funcs[:15]:
    print(f"| {f} | {n} |")
print(f"\ntotal: {sum(n for n, _ in files)} lines in {len(files)} modules")
