"""Smoke test of the benchmark harness (it is a benchmark, not a timed test: no speed is asserted)."""

from __future__ import annotations

import json

import pytest

from spermlib.evaluation.bench import run_bench


def test_bench_runs_and_reports_ratios(tmp_path, capsys):
    out = tmp_path / "bench.json"
    result = run_bench(quick=True, out=str(out), dataset="hushem", arch="simplecnn", input_size=32, app=False)
    saved = json.loads(out.read_text())
    assert saved["rows"] == result["rows"] and len(result["rows"]) == 5
    for row in result["rows"]:
        assert row["value"] > 0 and row["baseline_value"] > 0 and row["ratio"] > 0
    assert "bare timm forward" in capsys.readouterr().out


def test_dashboard_row_times_a_real_first_prediction():
    """A fresh interpreter opens the app and classifies a bundled sample with the shipped checkpoints."""
    from spermlib.data.datasets import get_dataset
    from spermlib.evaluation.bench import dashboard_first_prediction
    from spermlib.store.checkpoints import available_folds

    if not available_folds(get_dataset("hushem"), "effnet_cbam"):
        pytest.skip("no shipped hushem/effnet_cbam checkpoints")
    total, page = dashboard_first_prediction("effnet_cbam")
    assert total.unit == page.unit == "s" and 0 < page.value < total.value < 600
    assert "first prediction" in total.what and "Classify page" in page.what
