#!/usr/bin/env bash
# Install the X virtual framebuffer and the Qt/OpenGL libraries napari needs headless (Debian/Ubuntu).
# Does nothing when Xvfb is already there; without root it says what to install and fails.
set -euo pipefail
PKGS="xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-image0 libxcb-render-util0 \
libxcb-randr0 libxcb-shape0 libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-cursor0 libfontconfig1 \
libdbus-1-3"
if command -v Xvfb >/dev/null 2>&1 && ldconfig -p | grep -q libxcb-icccm; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "Xvfb or Qt's X libraries are missing; install them with:" >&2
    echo "  sudo apt-get install -y --no-install-recommends $PKGS" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $PKGS >/dev/null
