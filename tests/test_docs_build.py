"""The documentation site builds with ``--strict``: a broken link, a missing page or an API reference that
names nothing fails here (the same check as ``mkdocs build --strict``)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from spermlib.data.datasets import PROJECT_ROOT

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None,
                                reason="mkdocs is not installed (requirements-dev.txt)")


def test_docs_build_strict(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's banner about MkDocs 2, not a warning
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    assert "spermlib.api.predict" in (tmp_path / "site" / "api" / "index.html").read_text()  # mkdocstrings ran
