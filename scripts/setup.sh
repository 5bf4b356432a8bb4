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
# The real-GUI test runs Swift's Qt window under Xvfb: the X server, ImageMagick's
# import (screenshots), the libraries Qt's xcb plug-in loads, and PySide6 pinned to
# 6.11 (6.12.0 crashed Swift while scanning; 6.9.3 hung opening the window).
gui_packages=(xvfb imagemagick libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0
              libxcb-xinerama0 libxcb-randr0 libxcb-shape0 libxcb-xkb1 libegl1 libgl1 libfontconfig1 libdbus-1-3)
missing=()
for package in "${gui_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})) && command -v apt-get >/dev/null; then
    sudo_cmd=()
    [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
.venv/bin/pip install --quiet "PySide6-Essentials==6.11.3"
