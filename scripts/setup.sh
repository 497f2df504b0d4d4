#!/usr/bin/env bash
# Idempotent set-up on Debian/Ubuntu with Python 3.11: OS packages for offscreen MuJoCo
# rendering, a project-local virtual environment (.venv) with pinned packages, and the LIBERO
# worker's own (.venv-libero, requirements-libero.txt). Each venv's stamp file
# (.requirements.installed) holds the requirement files last installed: any change to them
# reinstalls (pip keeps what already matches).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
# This machine has no ROS 2 installation: the model / simulator set, the PyPI ROS wheels and
# the test tools all go into .venv (docs/install.md has the path for a robot with ROS 2).
REQUIREMENTS=(requirements-core.txt requirements-ros-pypi.txt requirements-test.txt)
STAMP=.venv/.requirements.installed
wanted() { for f in "${REQUIREMENTS[@]}"; do echo "# $f"; cat "$f"; done; }
if [ ! -x .venv/bin/python ] || ! wanted | cmp -s - "$STAMP"; then
  echo "setup: installing ${REQUIREMENTS[*]} into .venv ($($PYTHON --version))"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  args=()
  for f in "${REQUIREMENTS[@]}"; do args+=(-r "$f"); done
  .venv/bin/python -m pip install -q --disable-pip-version-check "${args[@]}"
  wanted > "$STAMP"
fi

# LIBERO's suites run in a worker process of their own (.venv-libero): LIBERO pins robosuite
# 1.4.0, the project uses 1.5.2. Same stamp rule as .venv; SPECPRUNE_SKIP_LIBERO=1 skips it
# (the LIBERO tests then skip, saying why).
LIBERO_REQUIREMENTS=requirements-libero.txt
LIBERO_STAMP=.venv-libero/.requirements.installed
if [ "${SPECPRUNE_SKIP_LIBERO:-0}" != 1 ] && \
   { [ ! -x .venv-libero/bin/python ] || ! cmp -s "$LIBERO_REQUIREMENTS" "$LIBERO_STAMP"; }; then
  echo "setup: installing $LIBERO_REQUIREMENTS into .venv-libero ($($PYTHON --version))"
  [ -x .venv-libero/bin/python ] || "$PYTHON" -m venv .venv-libero
  .venv-libero/bin/python -m pip install -q --disable-pip-version-check \
    -r "$LIBERO_REQUIREMENTS"
  cp "$LIBERO_REQUIREMENTS" "$LIBERO_STAMP"
fi
