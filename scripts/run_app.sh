#!/usr/bin/env bash
# Set up the environment and start the dashboard on http://127.0.0.1:8501 (loopback only, .streamlit/config.toml):
# `bash scripts/run_app.sh [streamlit args]`. Serving to a network: docs/security.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh requirements.txt
venv="${SPERMLIB_VENV:-.venv}"
exec "$venv/bin/python" -m streamlit run app.py "$@"
