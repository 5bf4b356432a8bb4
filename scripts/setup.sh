#!/usr/bin/env bash
# Create .venv and install nion-autoem with everything it needs; cheap to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# The pinned torch resolves to the CPU wheel these machines carry; an
# unpinned one would pull several GB of CUDA packages first.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/pip install --quiet "torch==2.13.0"
fi
# compat mode puts the checkout on sys.path, so Swift finds the
# nionswift_plugin.nion_autoem namespace package as well as nion_autoem.
.venv/bin/pip install --quiet -e ".[dev]" --config-settings editable_mode=compat
