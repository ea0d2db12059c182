"""Model comparison page: numbers from metrics.json, charts, and the confusion-cell → explorer link."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from streamlit.testing.v1 import AppTest

from spermlib.dashboard.tables import DETAIL_COLUMNS, SCORE_COLUMNS
from tests.app.rendered import visible

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def test_comparison_shows_the_numbers_of_metrics_json(app_env):
    at = open_page("views/compare.py")
    assert at.title[0].value == "Model comparison"
    for dataset in ("smids", "hushem"):
        at.selectbox(key="compare_dataset").set_value(dataset).run()
        assert not at.exception, at.exception
        metrics = json.loads((app_env["results"] / dataset / "metrics.json").read_text())
        table = at.dataframe[0].value
        assert at.dataframe[0].proto.column_order == SCORE_COLUMNS  # two tables, each fits the page
        assert at.dataframe[1].proto.column_order == DETAIL_COLUMNS
        for arch, m in metrics["archs"].items():
            acc = m["accuracy"]
            shown = f"{100 * acc['mean']:.1f} ± {100 * acc['std']:.1f} %"
            assert shown in set(table["Accuracy (mean ± std)"]), (arch, shown, table)
            assert f"{m['ece']:.3f}" in set(table["ECE"])
        assert len(table) == len(metrics["archs"]) == 3
        per_class = at.dataframe[2].value
        assert len(per_class) == 3 * len(metrics["classes"])
        mcnemar = at.dataframe[3].value
        assert sorted(mcnemar["p-value (exact McNemar)"]) == sorted(t["p_value"] for t in metrics["mcnemar"].values())
        text = visible(" ".join(m.value for m in at.markdown))
        assert "hold-out" in text and "5-fold" in text  # both protocols stated
        # fold bars + 3 confusion matrices + 3 ROC + reliability
        assert len(at.get("plotly_chart")) == 8
    assert "subset" in at.warning[0].value


def test_confusion_cell_opens_the_misclassification_explorer(app_env):
    # A filter narrowed earlier in the explorer must not hide the cell's images.
    at = open_page("views/mistakes.py")
    at.slider(key="mistakes_conf").set_range(0.99, 1.0).run()
    at.switch_page("views/compare.py").run()
    assert not at.exception, at.exception
    at.selectbox(key="compare_dataset").set_value("hushem").run()
    at.selectbox(key="compare_cell_arch").set_value("effnet").run()
    cell = at.selectbox(key="compare_cell")
    target = "02_Tapered|04_Amorphous"
    assert any(o.startswith("true Tapered → predicted Amorphous: ") for o in cell.options)
    cell.set_value(target).run()
    at.button(key="compare_open_cell").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Misclassification explorer"
    assert at.selectbox(key="mistakes_dataset").value == "hushem"
    assert at.selectbox(key="mistakes_arch_hushem").value == "effnet"
    assert at.multiselect(key="mistakes_true_hushem").value == ["02_Tapered"]
    assert at.multiselect(key="mistakes_pred_hushem").value == ["04_Amorphous"]
    assert at.slider(key="mistakes_conf").value == (0.0, 1.0)
    oof = pd.read_csv(app_env["results"] / "hushem" / "oof_effnet.csv")
    expected = ((oof["label"] == "02_Tapered") & (oof["pred"] == "04_Amorphous")).sum()
    cm = json.loads((app_env["results"] / "hushem" / "metrics.json").read_text())["archs"]["effnet"]["confusion_matrix"]
    assert expected == cm[1][3]
    assert len(at.dataframe[0].value) == expected


def test_comparison_without_results_says_what_to_run(empty_env):
    at = open_page("views/compare.py")
    assert "spermlib evaluate --dataset smids" in at.info[0].value
    assert not at.dataframe


def test_faithfulness_section_shows_the_numbers_of_faithfulness_json(app_env, tmp_path, monkeypatch):
    import shutil

    from spermlib.store.paths import RESULTS_ENV

    results = tmp_path / "results"
    shutil.copytree(app_env["results"], results)
    stat = {"mean": 0.123, "std": 0.05, "ci95": [0.101, 0.145]}
    entry = {"n_images": 20, "seconds": 1.0,
             "road_combined": {**stat, "control": {**stat, "mean": 0.045}, "share_above_control": 0.85},
             "cam_mult_confidence_change": {**stat, "mean": -0.2, "control": {**stat, "mean": -0.3},
                                            "share_above_control": 0.6}}
    (results / "hushem" / "faithfulness.json").write_text(json.dumps(
        {"archs": {"effnet_cbam": entry}, "protocol": "test folds only", "per_class": 1}))
    monkeypatch.setenv(RESULTS_ENV, str(results))
    at = open_page("views/compare.py")
    at.selectbox(key="compare_dataset").set_value("hushem").run()
    assert not at.exception, at.exception
    shown = [d for d in at.dataframe if "ROAD combined" in d.value.columns]  # one narrow table per metric
    assert [d.proto.column_order[2] for d in shown] == ["ROAD combined", "CamMult Δconfidence"]
    row = shown[0].value.iloc[0]
    assert row["Model"] == "EfficientNet + CBAM" and row["Images"] == 20
    assert row["ROAD combined"] == "0.123 (0.101–0.145)" and row["ROAD combined, control"] == "0.045"
    assert row["ROAD combined: map beats control"] == "85 %"
    at.selectbox(key="compare_dataset").set_value("smids").run()
    assert any("spermlib faithfulness --dataset smids" in i.value for i in at.info)


def test_robustness_panel_shows_robustness_json_or_says_how_to_make_it(app_env, tmp_path, monkeypatch):
    import json
    import shutil

    from spermlib.data.corruptions import CORRUPTIONS

    results = tmp_path / "results"
    shutil.copytree(app_env["results"], results)
    monkeypatch.setenv("SPERMLIB_RESULTS", str(results))
    rows = [{"severity": i + 1, "parameter": p, "accuracy": 0.5, "macro_f1": 0.5, "accuracy_drop": 0.1 * (i + 1),
             "macro_f1_drop": 0.1} for i, p in enumerate((1, 2, 3))]
    entry = {"clean": {"accuracy": 0.9, "macro_f1": 0.9}, "corruptions": {n: rows for n in CORRUPTIONS}}
    report = {"archs": {"effnet_cbam": entry, "effnet_cbam+tta": entry},
              "corruptions": {n: {"parameter": c.parameter, "severities": list(c.severities)}
                              for n, c in CORRUPTIONS.items()}, "protocol": "out of fold"}
    (results / "smids" / "robustness.json").write_text(json.dumps(report))
    (results / "hushem" / "robustness.json").unlink(missing_ok=True)
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("views/compare.py")
    at.session_state["compare_dataset"] = "smids"
    at.run()
    assert not at.exception, at.exception
    captions = " ".join(c.value for c in at.caption)
    assert "Points of out-of-fold accuracy lost" in captions and "EfficientNet + CBAM 90.0 %" in captions

    def heatmap_titles() -> list[str]:
        specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
        return [f["layout"]["title"]["text"] for f in specs if f["data"] and f["data"][0].get("type") == "heatmap"
                and "points lost" in json.dumps(f["data"][0].get("colorbar", {}))]

    assert heatmap_titles() == ["EfficientNet + CBAM"]  # the TTA entry (robustness --tta) only with the toggle
    at.session_state["compare_tta"] = True  # (these metrics have no TTA entry, so the toggle itself is disabled)
    at.run()
    assert heatmap_titles() == ["EfficientNet + CBAM", "EfficientNet + CBAM (TTA)"]


def test_charts_add_the_tta_scores_by_default_as_classify_predicts_with_tta(app_env, tmp_path, monkeypatch):
    import shutil

    results = tmp_path / "results"
    shutil.copytree(app_env["results"], results)
    monkeypatch.setenv("SPERMLIB_RESULTS", str(results))
    path = results / "smids" / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["archs"]["effnet_cbam+tta"] = {**metrics["archs"]["effnet_cbam"], "tta": True}
    path.write_text(json.dumps(metrics))
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("views/compare.py")
    at.session_state["compare_dataset"] = "smids"
    at.run()
    assert not at.exception, at.exception

    def chart_titles() -> list[str]:
        return [json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "") for c in at.get("plotly_chart")]

    assert at.toggle(key="compare_tta").value is True
    assert "<b>EfficientNet + CBAM (TTA)</b>" in chart_titles()  # its confusion matrix
    at.toggle(key="compare_tta").set_value(False).run()
    assert not any("(TTA)" in t for t in chart_titles())
