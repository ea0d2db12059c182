"""The import contracts of pyproject.toml (``[tool.importlinter]``) hold: ``lint-imports`` reports none broken.

The layers follow the flow of data (cli and api on top, then the dashboard, the samples and the evaluation,
training and the vocabulary, inference, calibration, the store, models and data, the torch-free basics); the
dashboard's view-models import nothing built on torch. Imports inside functions count like any other.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="import-linter is in requirements-dev.txt")

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    command = [str(lint_imports)] if lint_imports.is_file() else [sys.executable, "-m", "importlinter.cli"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([*command, "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout
