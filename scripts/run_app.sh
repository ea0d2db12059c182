#!/usr/bin/env bash
# Set up the environment and start the dashboard: `bash scripts/run_app.sh [streamlit args]`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh requirements.txt
venv="${SPERMLIB_VENV:-.venv}"
exec "$venv/bin/python" -m streamlit run app.py "$@"
