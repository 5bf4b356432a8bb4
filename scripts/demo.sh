#!/usr/bin/env bash
# Install, then run the closed-loop demo on the simulated microscope.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python examples/closed_loop_demo.py --out "${1:-out/demo}"
