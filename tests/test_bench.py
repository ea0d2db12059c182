"""Smoke test of the benchmark harness (it is a benchmark, not a timed test: no speed is asserted)."""

from __future__ import annotations

import json

from spermlib.bench import run_bench


def test_bench_runs_and_reports_ratios(tmp_path, capsys):
    out = tmp_path / "bench.json"
    result = run_bench(quick=True, out=str(out), dataset="hushem", arch="simplecnn", input_size=32)
    saved = json.loads(out.read_text())
    assert saved["rows"] == result["rows"] and len(result["rows"]) == 5
    for row in result["rows"]:
        assert row["value"] > 0 and row["baseline_value"] > 0 and row["ratio"] > 0
    assert "bare timm forward" in capsys.readouterr().out
