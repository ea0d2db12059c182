"""Reading evaluation outputs: leaderboard, comparison tables, error filtering, model disagreement."""

from __future__ import annotations

import io
import json
from unittest.mock import patch

import numpy as np
import pandas as pd
import pytest

from spermlib.dashboard.tables import (
    DETAIL_COLUMNS,
    PAPER_COLUMN,
    PAPER_RESULTS,
    SCORE_COLUMNS,
    MistakeFilter,
    confusion_cells,
    disagreement,
    export_table,
    faithfulness_column_groups,
    faithfulness_table,
    filter_predictions,
    leaderboard,
    leaderboard_display,
    mark_present,
    mcnemar_table,
    metrics_table,
    missing_results_message,
    per_fold_table,
    prediction_table,
    to_csv_bytes,
)
from spermlib.data.datasets import get_dataset
from spermlib.evaluation.evaluate import compute_metrics, mcnemar
from spermlib.store.results import ResultsError, load_metrics, load_oofs, oof_archs

SMIDS = get_dataset("smids")
CLASSES = list(SMIDS.class_dirs)


def synthetic_oof(seed: int, accuracy: float, n: int = 60) -> pd.DataFrame:
    """An OOF table of the real format: 5 folds, labels balanced, ``accuracy`` share right."""
    rng = np.random.default_rng(seed)
    labels = np.array([CLASSES[i % 3] for i in range(n)])
    right = rng.random(n) < accuracy
    pred = np.where(right, labels, [CLASSES[(CLASSES.index(lab) + 1 + rng.integers(2)) % 3] for lab in labels])
    probs = rng.dirichlet(np.ones(3), n)
    # Make the predicted class the argmax, as evaluate's OOF tables have it.
    for i, p in enumerate(pred):
        k = CLASSES.index(p)
        probs[i, k] = probs[i].max() + 0.1
        probs[i] /= probs[i].sum()
    df = pd.DataFrame({"path": [f"{lab}/img_{i:03d}.png" for i, lab in enumerate(labels)], "label": labels,
                       "fold": np.arange(n) % 5, "pred": pred})
    for k, c in enumerate(CLASSES):
        df[f"prob_{c}"] = np.round(probs[:, k], 6)
    return df


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    """A results folder with SMIDS evaluated (3 archs, subset) and HuSHeM not evaluated (read-only)."""
    base = tmp_path_factory.mktemp("results_base")
    out = base / "results" / "smids"
    out.mkdir(parents=True)
    oofs = {"simplecnn": synthetic_oof(1, 0.5), "effnet": synthetic_oof(2, 0.7), "effnet_cbam": synthetic_oof(3, 0.9)}
    archs = {}
    # The bootstrap (2000 resamples per metric) is evaluate's business and tested there; a fixed CI keeps this fast.
    with patch("spermlib.evaluation.evaluate.bootstrap_ci", lambda y, pred, metric: [0.1, 0.9]):
        for arch, df in oofs.items():
            df.to_csv(out / f"oof_{arch}.csv", index=False)
            archs[arch] = {**compute_metrics(df, CLASSES), "backbone": f"backbone-{arch}", "pretrained_source": "x",
                           "input_size": 64, "tta": False, "training_seconds_total": 1.0}
    metrics = {"archs": archs, "mcnemar": {"simplecnn vs effnet": mcnemar(oofs["simplecnn"], oofs["effnet"])},
               "dataset": "smids", "classes": CLASSES, "full_dataset": False, "protocol": "our protocol text"}
    (out / "metrics.json").write_text(json.dumps(metrics))
    return base / "results"


def test_leaderboard_has_one_row_per_evaluated_arch_with_the_json_numbers(results_dir):
    board = leaderboard(results_dir)
    metrics = json.loads((results_dir / "smids" / "metrics.json").read_text())
    assert list(board["arch"]) == ["simplecnn", "effnet", "effnet_cbam"]  # HuSHeM not evaluated: no rows
    assert set(board["dataset"]) == {"smids"}
    for r in board.itertuples():
        m = metrics["archs"][r.arch]
        assert r.accuracy_mean == m["accuracy"]["mean"] and r.macro_f1_std == m["macro_f1"]["std"]
        assert [r.accuracy_ci_lo, r.accuracy_ci_hi] == m["accuracy"]["ci95"]
        assert r.accuracy_pooled == m["accuracy"]["pooled"]
        assert r.backbone == f"backbone-{r.arch}" and r.protocol == "our protocol text"
    # The paper's numbers sit only beside the paper's model.
    paper = board.set_index("arch")["paper_accuracy"]
    assert paper["effnet_cbam"] == PAPER_RESULTS["smids"]["accuracy"]
    assert paper[["simplecnn", "effnet"]].isna().all()


def test_leaderboard_display_formats_ours_beside_the_paper(results_dir):
    board = leaderboard(results_dir)
    shown = leaderboard_display(board)
    cbam = board.set_index("arch").loc["effnet_cbam"]
    row = shown.iloc[2]
    expected = f"{100 * cbam.accuracy_mean:.1f} ± {100 * cbam.accuracy_std:.1f} %"
    assert row["Accuracy (mean ± std)"] == expected
    assert row["Accuracy 95 % CI"] == f"{100 * cbam.accuracy_ci_lo:.1f}–{100 * cbam.accuracy_ci_hi:.1f} %"
    assert row[PAPER_COLUMN] == "90.2 % / 0.913"
    assert shown.iloc[0][PAPER_COLUMN] == "—"
    assert len(shown.columns) <= 6  # one table per dataset without its Dataset column fits a phone


def test_no_results_gives_an_empty_board_and_a_command(tmp_path):
    board = leaderboard(tmp_path / "nothing")
    assert board.empty and "accuracy_mean" in board.columns
    assert load_metrics("hushem", tmp_path) is None
    assert leaderboard(tmp_path, datasets=[]).empty
    msg = missing_results_message("hushem", tmp_path)
    assert "spermlib evaluate --dataset hushem" in msg


def test_unreadable_metrics_raise_a_results_error(tmp_path):
    (tmp_path / "smids").mkdir()
    (tmp_path / "smids" / "metrics.json").write_text("{not json")
    with pytest.raises(ResultsError, match="not readable JSON"):
        load_metrics("smids", tmp_path)
    (tmp_path / "smids" / "metrics.json").write_text("[]")
    with pytest.raises(ResultsError, match="archs"):
        load_metrics("smids", tmp_path)


def test_oof_with_missing_columns_is_refused(tmp_path):
    (tmp_path / "smids").mkdir()
    pd.DataFrame({"path": ["a"], "label": ["Normal_Sperm"]}).to_csv(tmp_path / "smids" / "oof_effnet.csv", index=False)
    with pytest.raises(ResultsError, match="lacks columns"):
        load_oofs("smids", tmp_path)


def test_comparison_tables_follow_metrics(results_dir):
    metrics = load_metrics("smids", results_dir)
    table = metrics_table(metrics)
    assert list(table["Model"]) == ["SimpleCNN", "EfficientNet", "EfficientNet + CBAM"]
    m = metrics["archs"]["effnet"]
    assert table.iloc[1]["Accuracy pooled"] == f"{100 * m['accuracy']['pooled']:.1f} %"
    assert table.iloc[1]["ECE"] == f"{m['ece']:.3f}"
    assert list(table["Input (px)"]) == ["64"] * 3  # text, so per-fold sizes (below) share the column type
    sizes = "224 px on fold 0, 160 px on fold 1"
    per_fold = {**metrics, "archs": {**metrics["archs"], "effnet": {**m, "input_size": sizes}}}
    assert metrics_table(per_fold).iloc[1]["Input (px)"] == "224 on fold 0, 160 on fold 1"
    # shown as two tables that share only the model column and together show every column
    assert set(SCORE_COLUMNS) | set(DETAIL_COLUMNS) == set(table.columns)
    assert set(SCORE_COLUMNS) & set(DETAIL_COLUMNS) == {"Model"}
    folds = per_fold_table(metrics)
    assert len(folds) == 15 and folds.groupby("arch")["n"].sum().eq(60).all()
    mc = mcnemar_table(metrics)
    assert mc.iloc[0]["p-value (exact McNemar)"] == metrics["mcnemar"]["simplecnn vs effnet"]["p_value"]


def test_confusion_cells_match_the_matrix(results_dir):
    metrics = load_metrics("smids", results_dir)
    cells = confusion_cells(metrics, "effnet", SMIDS)
    cm = np.array(metrics["archs"]["effnet"]["confusion_matrix"])
    assert cells["count"].to_numpy().reshape(3, 3).tolist() == cm.tolist()
    cell = cells[(cells["true"] == "Normal_Sperm") & (cells["pred"] == "Non-Sperm")].iloc[0]
    assert cell["row_share"] == pytest.approx(cm[0, 2] / cm[0].sum())
    assert cells.groupby("true")["row_share"].sum().round(9).eq(1).all()


def _oof(preds: dict[str, str], labels: dict[str, str] | None = None) -> pd.DataFrame:
    paths = list(preds)
    labels = labels or {p: "Normal_Sperm" for p in paths}
    df = pd.DataFrame({"path": paths, "label": [labels[p] for p in paths], "fold": 0,
                       "pred": [preds[p] for p in paths]})
    for c in CLASSES:
        df[f"prob_{c}"] = [0.8 if preds[p] == c else 0.1 for p in paths]
    return df


def test_disagreement_flags_images_whose_predictions_differ():
    a = _oof({"x": "Normal_Sperm", "y": "Non-Sperm", "z": "Normal_Sperm", "only_a": "Non-Sperm"})
    b = _oof({"x": "Normal_Sperm", "y": "Non-Sperm", "z": "Abnormal_Sperm"})
    c = _oof({"x": "Normal_Sperm", "y": "Abnormal_Sperm", "z": "Abnormal_Sperm"})
    tta = _oof({"x": "Non-Sperm", "y": "Non-Sperm", "z": "Abnormal_Sperm"})  # a re-scoring, not another model
    d = disagreement({"simplecnn": a, "effnet": b, "effnet_cbam": c, "effnet+tta": tta})
    assert d.to_dict() == {"only_a": False, "x": False, "y": True, "z": True}
    assert not disagreement({"effnet": b}).any()  # one model cannot disagree with itself


def test_filter_predictions_matches_a_pandas_computation(results_dir):
    oofs = load_oofs("smids", results_dir)
    oof = oofs["effnet"]
    table = prediction_table(oof, SMIDS, disagreement(oofs), {a: o for a, o in oofs.items() if a != "effnet"})
    conf = oof.apply(lambda r: r[f"prob_{r['pred']}"], axis=1)
    assert table["confidence"].tolist() == conf.tolist()
    wrong = oof["label"] != oof["pred"]

    assert len(filter_predictions(table, MistakeFilter())) == wrong.sum()
    assert len(filter_predictions(table, MistakeFilter(errors_only=False))) == len(oof)
    got = filter_predictions(table, MistakeFilter(true_classes=["Abnormal_Sperm"], pred_classes=["Non-Sperm"]))
    expected = oof[(oof["label"] == "Abnormal_Sperm") & (oof["pred"] == "Non-Sperm")]
    assert sorted(got["path"]) == sorted(expected["path"])
    got = filter_predictions(table, MistakeFilter(confidence=(0.5, 0.7), errors_only=False))
    assert sorted(got["path"]) == sorted(oof.loc[conf.between(0.5, 0.7), "path"])
    assert got["confidence"].is_monotonic_decreasing  # most confident first

    preds = pd.concat([o.set_index("path")["pred"] for o in oofs.values()], axis=1)
    differ = preds.nunique(axis=1) > 1
    got = filter_predictions(table, MistakeFilter(errors_only=False, disagree_only=True))
    assert sorted(got["path"]) == sorted(differ[differ].index)
    assert 0 < len(got) < len(oof)


def test_export_round_trips_the_filtered_table(results_dir):
    oofs = load_oofs("smids", results_dir)
    assert oof_archs("smids", results_dir) == ["simplecnn", "effnet", "effnet_cbam"]
    table = prediction_table(oofs["effnet"], SMIDS, disagreement(oofs), {"simplecnn": oofs["simplecnn"]})
    export = export_table(filter_predictions(table, MistakeFilter()), SMIDS)
    assert {"path", "label", "pred", "confidence", "fold", "pred_simplecnn", "prob_Non-Sperm"} <= set(export.columns)
    back = pd.read_csv(io.BytesIO(to_csv_bytes(export)), keep_default_na=False)
    pd.testing.assert_frame_equal(back, export, check_dtype=False)


def test_mark_present_checks_files_under_the_root(tmp_path):
    (tmp_path / "Normal_Sperm").mkdir()
    (tmp_path / "Normal_Sperm" / "here.png").write_bytes(b"x")
    table = pd.DataFrame({"path": ["Normal_Sperm/here.png", "Normal_Sperm/gone.png"]})
    assert mark_present(table, tmp_path)["file_present"].tolist() == [True, False]


def test_faithfulness_table_splits_into_one_narrow_table_per_metric():
    stat = {"mean": 0.1, "std": 0.01, "ci95": [0.05, 0.15], "control": {"mean": 0.0}, "share_above_control": 0.7}
    report = {"archs": {"effnet": {"n_images": 10, "road_combined": stat, "cam_mult_confidence_change": stat}}}
    table = faithfulness_table(report)
    road, cam = faithfulness_column_groups(table)
    assert road == ["Model", "Images", "ROAD combined", "ROAD combined, control", "ROAD combined: map beats control"]
    assert cam[2:] == ["CamMult Δconfidence", "CamMult Δconfidence, control", "CamMult Δconfidence: map beats control"]
    assert set(road) | set(cam) == set(table.columns)
