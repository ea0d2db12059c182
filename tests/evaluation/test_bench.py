"""Smoke test of the benchmark harness (it is a benchmark, not a timed test: no speed is asserted)."""

from __future__ import annotations

import json

import pytest
import torch

from spermlib.evaluation.bench import run_bench
from spermlib.runtime import precision_policy


def test_bench_runs_and_reports_ratios(tmp_path, capsys):
    out = tmp_path / "bench.json"
    result = run_bench(quick=True, out=str(out), dataset="hushem", arch="simplecnn", input_size=32, app=False)
    saved = json.loads(out.read_text())
    assert saved["rows"] == result["rows"] and len(result["rows"]) == 5
    ours = precision_policy(torch.device(result["device"])).name
    assert result["precision"] == ours
    for row in result["rows"]:
        assert row["value"] > 0 and row["baseline_value"] > 0 and row["fp32_baseline_value"] > 0
        # The target's ratio is against the baseline at our precision; the fp32 one is reported beside it.
        assert row["ratio"] == pytest.approx(row["value"] / row["baseline_value"])
        assert row["fp32_ratio"] == pytest.approx(row["value"] / row["fp32_baseline_value"])
        assert row["precision"] == ours
    out = capsys.readouterr().out
    assert "bare timm forward" in out and "fp32 base" in out


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
