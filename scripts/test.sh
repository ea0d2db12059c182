#!/usr/bin/env bash
# Set up the environment and run the whole test suite: `bash scripts/test.sh [pytest args]`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh requirements-dev.txt
venv="${SPERMLIB_VENV:-.venv}"
"$venv/bin/python" -m ruff check spermlib tests app.py views tools research
exec "$venv/bin/python" -m pytest "$@"
