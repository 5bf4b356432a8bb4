#!/usr/bin/env bash
# Install, lint, type-check and run the test suite (headless, on usim).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export QT_QPA_PLATFORM=offscreen
.venv/bin/ruff check .
.venv/bin/mypy nion_autoem nion_autoem_dkl nion_autoem_elit nion_autoem_targeting nion_autoem_checks nion_autoem_fewshot nion_autoem_forecast nion_autoem_models \
    nionswift_plugin/nion_autoem tests benchmarks examples
# pytest exits 5 when it collects nothing; any non-zero status fails here.
.venv/bin/python -m pytest "$@"
