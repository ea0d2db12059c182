"""The throwaway PostgreSQL of the tests (tests/postgres.py): where PostgreSQL is missing, the tests that need
it are skipped with the reason — and fail under CI=true, so CI cannot pass without testing the backend."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from _pytest.outcomes import Failed, Skipped

from spermlib.data.datasets import PROJECT_ROOT
from tests import postgres


@pytest.mark.parametrize("ci,outcome", [("true", Failed), ("", Skipped)])
def test_missing_postgresql_fails_in_ci_and_skips_elsewhere(monkeypatch, ci, outcome):
    monkeypatch.setenv("CI", ci)
    monkeypatch.setattr(postgres, "find_bin_dir", lambda: None)
    with pytest.raises(outcome, match="initdb/pg_ctl not found"), postgres.throwaway_server():
        pass


def test_the_binaries_are_found_where_debian_puts_them(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # not on $PATH: Debian keeps them in /usr/lib/postgresql/<ver>/bin
    found = postgres.find_bin_dir()
    if found is None:
        postgres.unavailable("PostgreSQL is not installed")
    assert (found / "initdb").exists() and (found / "pg_ctl").exists()


KILLED_RUN = """
import time
from tests.postgres import throwaway_server
with throwaway_server() as server:
    print(server.root, flush=True)
    time.sleep(600)
"""


def test_a_killed_test_run_leaves_no_server_behind():
    """The test process dies without its teardown (SIGKILL): the watchdog stops the server, removes its folder."""
    if postgres.find_bin_dir() is None:
        postgres.unavailable("initdb/pg_ctl not found")
    run = subprocess.Popen([sys.executable, "-c", KILLED_RUN], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    root = Path(run.stdout.readline().strip())
    assert (root / "data" / "postmaster.pid").exists()  # the server is up
    run.kill()
    run.wait()
    deadline = time.monotonic() + 30
    while root.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not root.exists()
