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
    assert saved["rows"] == result["rows"] and len(result["rows"]) == 9
    # The accuracy issue's 0.5 s target is read on the shipped default inference (TTA and the domain check).
    [target] = [r for r in result["rows"] if r["target"] == "< 0.5 s"]
    assert "TTA" in target["what"] and "out-of-domain" in target["what"]
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


def _shipped_sample(arch: str = "effnet_cbam") -> tuple[str, str]:
    from spermlib.data.datasets import SAMPLE_DATA_ROOT, get_dataset, list_images
    from spermlib.store.checkpoints import available_folds

    spec = get_dataset("hushem")
    if not available_folds(spec, arch):
        pytest.skip(f"no shipped hushem/{arch} checkpoints")
    return "hushem", list_images(spec, SAMPLE_DATA_ROOT / spec.folder)["path"].iloc[0]


def test_dashboard_row_times_a_real_first_prediction():
    """A fresh interpreter opens the app and classifies a bundled sample with the shipped checkpoints."""
    from spermlib.evaluation.bench import dashboard_first_prediction

    dataset, sample = _shipped_sample()
    total, page = dashboard_first_prediction(dataset, "effnet_cbam", sample)
    assert total.unit == page.unit == "s" and 0 < page.value < total.value < 600
    assert "first prediction" in total.what and "Classify page" in page.what


@pytest.mark.e2e
def test_browser_rows_time_a_real_server_and_browser():
    """`streamlit run` + Chromium: the Overview's title comes before its end, which comes before the prediction."""
    pytest.importorskip("playwright.sync_api")
    from spermlib.evaluation.bench import browser_rows
    from spermlib.evaluation.browser import CHROMIUM

    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)")
    dataset, sample = _shipped_sample()
    title, overview, classify = browser_rows(dataset, "effnet_cbam", sample)
    assert 0 < title.value <= overview.value < classify.value < 600
    assert [r.target for r in (overview, classify)] == ["≤ 3 s", "≤ 5 s"] and "browser" in classify.what
