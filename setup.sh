#!/usr/bin/env bash
# Sets up tripletlab in ./.venv on a fresh machine that has only Python 3.10+ and pip.
#   ./setup.sh          the package and its runtime dependencies
#   ./setup.sh dev      plus the test tools (pytest, hypothesis, ruff, mypy)
#   ./setup.sh bench    plus the peers measured by benchmarks (pytorch-metric-learning,
#                       sentence-transformers, faiss-cpu)
#   ./setup.sh vision | deploy | serve | all
#                       the package with real-image training (transformers, kornia), ONNX
#                       export, the HTTP service, or all of them
# torch is installed only where it is missing, and then as exactly 2.13.0 (a CPU build that lies
# on these machines' disk): any looser requirement would make pip download a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")"
extras="${1:-}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    echo "setup: installing torch 2.13.0" >&2
    "${pip[@]}" "torch==2.13.0"
fi
case "$extras" in
    "") spec="." ;;
    dev) spec=".[dev]" ;;
    bench) spec=".[dev,bench]" ;;
    vision | deploy | serve) spec=".[$extras]" ;;
    all) spec=".[vision,serve,html,faiss]" ;;
    *) echo "setup: unknown extra '$extras' (expected: dev, bench, vision, deploy, serve, all)" >&2; exit 2 ;;
esac
echo "setup: installing tripletlab${extras:+ with $extras}" >&2
"${pip[@]}" -e "$spec"
