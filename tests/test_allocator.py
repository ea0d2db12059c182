"""The allocator policy the CLI and the Ray actors set (glibc's mmap/trim thresholds)."""

from __future__ import annotations

import platform

import pytest

from spermlib.allocator import tune_malloc


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_glibc_accepts_the_thresholds_and_a_second_call_changes_nothing():
    assert tune_malloc() is True
    assert tune_malloc() is True  # cached: set once per process


def test_the_cli_sets_it_before_running_a_command(monkeypatch, capsys):
    import spermlib.cli as cli

    calls = []
    monkeypatch.setattr(cli, "tune_malloc", lambda: calls.append(1) or True)
    assert cli.main(["report", "--check"]) in (0, 1)
    assert calls == [1]


def test_robustness_keeps_the_default_policy(monkeypatch):
    """`robustness` holds dozens of large corrupted copies one after another: under the heap-keeping policy it
    grew past 24 GiB on SMIDS, so it runs with glibc's default."""
    import spermlib.cli as cli

    calls, ran = [], []
    monkeypatch.setattr(cli, "tune_malloc", lambda: calls.append(1) or True)
    monkeypatch.setattr("spermlib.evaluation.robustness.robustness_dataset",
                        lambda spec, **kw: ran.append(spec.name) or {"archs": {}, "written_to": "nowhere"})
    assert cli.main(["robustness", "--dataset", "hushem"]) == 0
    assert ran == ["hushem"] and calls == []
