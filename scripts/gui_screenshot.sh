#!/usr/bin/env bash
# Screenshot of the real Nion Swift GUI with the nion-autoem plug-in and usim, under Xvfb.
#
#   scripts/gui_screenshot.sh [OUT.png]          (default: out/gui/swift_autoem.png)
#
# Environment:
#   PYTHON        interpreter with nionswift, nionswift-instrumentation and nionswift-usim
#                 (default .venv/bin/python); PySide6-Essentials is pip-installed into it if missing.
#   GUI_SCAN=0    show the UI only, without starting usim's scan.
#   GUI_SETTLE=S  seconds to let the window settle before the picture (default 8).
#   GUI_SIZE=WxH  virtual screen size (default 1600x1000).
#   GUI_FOV_NM=F  scan field of view in nm (default 6: atomic columns of the MoS2 twin).
#
# Installs (only what is missing, needs root for apt): xvfb, imagemagick and the X/GL
# libraries Qt's xcb platform plug-in loads; PySide6-Essentials.  Recipe: shared/NION_NOTES.md,
# "Real GUI under Xvfb".
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

out_png="${1:-out/gui/swift_autoem.png}"
python="${PYTHON:-.venv/bin/python}"
scan="${GUI_SCAN:-1}"
settle="${GUI_SETTLE:-8}"
screen_size="${GUI_SIZE:-1600x1000}"
# Swift plus usim start in ~10-20 s on a busy 2-core machine; beyond this, something is wrong.
ready_timeout_s=75

log() { echo "gui_screenshot: $*" >&2; }

if [[ ! -x "$python" ]]; then
    log "no interpreter at $python (set PYTHON=/path/to/python)"
    exit 2
fi

# --- install what is missing -------------------------------------------------
# Qt's xcb plug-in dlopens these at start-up; a missing one shows up only as
# "could not load the Qt platform plugin", so install the whole verified set.
apt_packages=(xvfb imagemagick libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0
              libxcb-render-util0 libxcb-xinerama0 libxcb-randr0 libxcb-shape0 libxcb-xkb1 libegl1 libgl1
              libfontconfig1 libdbus-1-3)
missing=()
for package in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    sudo_cmd=()
    [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! "$python" -c "import PySide6" 2>/dev/null; then
    log "installing PySide6-Essentials into $("$python" -c 'import sys; print(sys.prefix)')"
    "$python" -m pip install -q "PySide6-Essentials==6.11.3"  # 6.12.0 crashed Swift while scanning
fi

# --- throwaway state; everything we start is killed on exit -----------------
work_dir="$(mktemp -d "${TMPDIR:-/tmp}/nion_autoem_gui.XXXXXX")"
xvfb_pid=""
swift_pid=""
cleanup() {
    # Kill only the processes this script started, by PID; Swift first so it is not left without a display.
    if [[ -n "$swift_pid" ]] && kill -0 "$swift_pid" 2>/dev/null; then
        kill "$swift_pid" 2>/dev/null || true
        for _ in 1 2 3 4 5; do kill -0 "$swift_pid" 2>/dev/null || break; sleep 1; done
        kill -9 "$swift_pid" 2>/dev/null || true
    fi
    if [[ -n "$xvfb_pid" ]]; then
        kill "$xvfb_pid" 2>/dev/null || true
        wait "$xvfb_pid" 2>/dev/null || true
    fi
    rm -rf "$work_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- Xvfb on a free display --------------------------------------------------
# A display is free when neither its lock file nor its socket exists; Xvfb may still
# lose a race with another starter, so try the next number if it dies at once.
display_num=""
for n in $(seq 90 140); do
    [[ -e "/tmp/.X${n}-lock" || -e "/tmp/.X11-unix/X${n}" ]] && continue
    Xvfb ":$n" -screen 0 "${screen_size}x24" -nolisten tcp -noreset >"$work_dir/xvfb.log" 2>&1 &
    xvfb_pid=$!
    for _ in $(seq 1 50); do
        [[ -e "/tmp/.X11-unix/X${n}" ]] && break
        kill -0 "$xvfb_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$xvfb_pid" 2>/dev/null && [[ -e "/tmp/.X11-unix/X${n}" ]]; then
        display_num="$n"
        break
    fi
    wait "$xvfb_pid" 2>/dev/null || true
    xvfb_pid=""
done
if [[ -z "$display_num" ]]; then
    log "could not start Xvfb on any display :90-:140"
    exit 1
fi
log "Xvfb on :$display_num (${screen_size})"

# --- Swift ------------------------------------------------------------------
# Throwaway HOME/XDG dirs: Swift keeps its profile, preferences and logs there, and usim
# writes device configs there; nothing leaks into (or is read from) the real home.
export DISPLAY=":$display_num" QT_QPA_PLATFORM=xcb
export HOME="$work_dir/home" XDG_DATA_HOME="$work_dir/data" XDG_CONFIG_HOME="$work_dir/config"
export XDG_CACHE_HOME="$work_dir/cache" XDG_RUNTIME_DIR="$work_dir/runtime"
mkdir -p "$HOME" "$XDG_DATA_HOME" "$XDG_CONFIG_HOME" "$XDG_CACHE_HOME" "$XDG_RUNTIME_DIR"
chmod 700 "$XDG_RUNTIME_DIR"
# The repo is not pip-installed: PYTHONPATH makes nion_autoem and nionswift_plugin.nion_autoem
# importable (nionswift_plugin is a namespace package, so it merges with usim's).
export PYTHONPATH="$repo_root${PYTHONPATH:+:$PYTHONPATH}"

scan_flag="--scan"
[[ "$scan" == "0" ]] && scan_flag="--no-scan"
ready_file="$work_dir/ready"
"$python" scripts/gui_screenshot.py --profile-dir "$work_dir/profile" --ready-file "$ready_file" \
    "$scan_flag" --fov-nm "${GUI_FOV_NM:-6}" --settle "$settle" --quit-after $((ready_timeout_s + 30)) >"$work_dir/swift.log" 2>&1 &
swift_pid=$!

for _ in $(seq 1 $((ready_timeout_s * 2))); do
    [[ -e "$ready_file" ]] && break
    kill -0 "$swift_pid" 2>/dev/null || break
    sleep 0.5
done
if [[ ! -e "$ready_file" ]]; then
    log "Swift did not get ready; last lines of its log:"
    tail -n 30 "$work_dir/swift.log" >&2 || true
    exit 1
fi

mkdir -p "$(dirname "$out_png")"
rm -f "$out_png"
import -display ":$display_num" -window root "$out_png"
if [[ ! -s "$out_png" ]]; then
    log "no screenshot at $out_png"
    exit 1
fi
log "wrote $out_png"
