"""The placeholder dashboard renders on the bundled data and says what it found."""

from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def test_overview_renders_and_reports_data():
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    assert "Interpretable sperm-morphology classification" in at.title[0].value
    table = at.dataframe[0].value
    assert len(table) == 2
    assert table["data"].str.contains("images").all()
    citations = " ".join(m.value for m in at.markdown)
    assert "doi:10.17632/6xvdhc9fyb.1" in citations and "doi:10.17632/tt3yj2pf38.3" in citations


def test_leaderboard_shows_metrics_json_beside_the_paper(app_env):
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    status = at.dataframe[0].value
    assert status["checkpoints"].str.contains("effnet_cbam: 5 folds").all()
    board = at.dataframe[1].value
    assert len(board) == 6  # 3 archs × 2 datasets
    for dataset, folder in (("smids", "SMIDS"), ("hushem", "HuSHeM")):
        metrics = json.loads((app_env["results"] / dataset / "metrics.json").read_text())
        rows = board[board["Dataset"] == folder].set_index("Model")
        for arch, title in (("simplecnn", "SimpleCNN"), ("effnet", "EfficientNet"),
                            ("effnet_cbam", "EfficientNet + CBAM")):
            acc, f1 = metrics["archs"][arch]["accuracy"], metrics["archs"][arch]["macro_f1"]
            assert rows.at[title, "Accuracy (mean ± std over folds)"] == \
                f"{100 * acc['mean']:.1f} ± {100 * acc['std']:.1f} %"
            assert rows.at[title, "Macro-F1 (mean ± std)"] == f"{f1['mean']:.3f} ± {f1['std']:.3f}"
            lo, hi = acc["ci95"]
            assert rows.at[title, "Accuracy 95 % CI"] == f"{100 * lo:.1f}–{100 * hi:.1f} %"
        assert rows.at["EfficientNet + CBAM", "Paper accuracy"] == {"smids": "90.2 %", "hushem": "93.9 %"}[dataset]
        assert rows.at["SimpleCNN", "Paper accuracy"] == "—"
    # The fixture's results are on the bundled sample: labelled as a subset, not the published protocol.
    assert board["Evaluated on"].str.contains("not the published protocol").all()
    assert any("subset" in w.value for w in at.warning)
    captions = " ".join(c.value for c in at.caption)
    assert "5-fold" in captions and "hold-out" in captions
    links = [link.proto.page for link in at.get("page_link")]
    assert links == ["explorer", "classify", "compare", "mistakes", "embedding"]


def test_overview_without_results_says_which_command_produces_them(empty_env):
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    notices = " ".join(i.value for i in at.info)
    assert "python -m spermlib evaluate --dataset smids" in notices
    assert "python -m spermlib evaluate --dataset hushem" in notices
    assert "No trained checkpoints" in notices
    assert len(at.dataframe) == 1  # the status table, no leaderboard


def test_an_unreadable_metrics_file_is_reported_and_the_other_dataset_still_shown(app_env, tmp_path, monkeypatch):
    results = tmp_path / "results"
    (results / "smids").mkdir(parents=True)
    (results / "smids" / "metrics.json").write_text("{truncated")
    (results / "hushem").mkdir()
    (results / "hushem" / "metrics.json").write_bytes((app_env["results"] / "hushem" / "metrics.json").read_bytes())
    monkeypatch.setenv("SPERMLIB_RESULTS", str(results))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    assert len(at.error) == 1 and "smids" in at.error[0].value and "not readable JSON" in at.error[0].value
    board = at.dataframe[1].value
    assert set(board["Dataset"]) == {"HuSHeM"} and len(board) == 3
