"""Out-of-fold evaluation and its statistics."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

from spermlib.data.datasets import PROJECT_ROOT
from spermlib.evaluation.evaluate import compute_metrics, evaluate_dataset, expected_calibration_error, mcnemar
from spermlib.runtime import hardware, precision_policy
from spermlib.store.cards import fold_cards, training_devices
from spermlib.store.checkpoints import CheckpointError
from spermlib.store.results import entry_name, oof_path, parse_entry
from tests.model_fixtures import FOLD_CLASS, TOY, swapped_folds_manifest

CPU = torch.device("cpu")


def _oof(labels, preds, folds, classes=("a", "b")):
    rows = []
    for y, p, k in zip(labels, preds, folds):
        probs = {f"prob_{c}": (0.8 if c == p else 0.2 / (len(classes) - 1)) for c in classes}
        rows.append({"path": f"{len(rows)}.png", "label": y, "fold": k, "pred": p, **probs})
    return pd.DataFrame(rows)


def test_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.choice(["a", "b"], 200)
    p = np.where(rng.random(200) < 0.8, y, np.where(y == "a", "b", "a"))
    folds = np.arange(200) % 5
    m = compute_metrics(_oof(y, p, folds), ["a", "b"])
    accs = [accuracy_score(y[folds == k], p[folds == k]) for k in range(5)]
    assert m["accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert m["accuracy"]["std"] == pytest.approx(np.std(accs, ddof=1))
    assert m["accuracy"]["pooled"] == pytest.approx(accuracy_score(y, p))
    assert m["macro_f1"]["pooled"] == pytest.approx(f1_score(y, p, average="macro"))
    lo, hi = m["accuracy"]["ci95"]
    assert lo < m["accuracy"]["pooled"] < hi and hi - lo < 0.15
    cm = np.array(m["confusion_matrix"])
    assert cm.sum() == 200 and np.trace(cm) == (y == p).sum()
    assert 0.5 < m["roc_auc_ovr_macro"] <= 1
    assert len(m["per_fold"]) == 5


def test_ece():
    # Always 80 % confident and right 80 % of the time → perfectly calibrated.
    proba = np.tile([0.8, 0.2], (100, 1))
    y = np.array([0] * 80 + [1] * 20)
    ece, bins = expected_calibration_error(proba, y)
    assert ece == pytest.approx(0.0) and bins[0]["count"] == 100
    # Always 80 % confident and right only half the time → ECE 0.3.
    y2 = np.array([0] * 50 + [1] * 50)
    assert expected_calibration_error(proba, y2)[0] == pytest.approx(0.3)


def test_mcnemar_exact():
    y = ["a"] * 30
    a = _oof(y, ["a"] * 30, [0] * 30)
    b = _oof(y, ["b"] * 10 + ["a"] * 20, [0] * 30)
    t = mcnemar(a, b)
    assert (t["a_right_b_wrong"], t["a_wrong_b_right"]) == (10, 0)
    assert t["p_value"] == pytest.approx(2 * 0.5**10)
    assert mcnemar(a, a)["p_value"] == 1.0


@pytest.mark.parametrize(("cards", "expected"), [
    ([{"device": "cpu"}, {"device": "cpu"}], "cpu"),
    ([{"device": "cuda:0"}], "cuda"),
    # a second stage on the CPU after a first stage on a GPU (hardening), and folds that differ
    ([{"device": "cpu", "init_device": "cuda"}], "cuda+cpu"),
    ([{"device": "cuda"}, {"device": "cpu", "init_device": "cuda"}], "cuda+cpu"),
    ([{}], None),
])
def test_training_devices_name_every_stage(cards, expected):
    assert training_devices(cards) == expected


def test_evaluate_dataset_end_to_end(toy_checkpoints, tmp_path):
    m = evaluate_dataset(TOY, toy_checkpoints["data_root"], archs=["simplecnn"],
                         splits_path=toy_checkpoints["manifest"], checkpoints_dir=toy_checkpoints["checkpoints"],
                         results_base=tmp_path)
    oof = pd.read_csv(tmp_path / "toy" / "oof_simplecnn.csv")
    manifest = pd.read_csv(toy_checkpoints["manifest"])
    assert sorted(oof["path"]) == sorted(manifest["path"])  # every image scored exactly once
    assert oof.set_index("path")["fold"].sort_index().equals(manifest.set_index("path")["fold"].sort_index())
    assert np.allclose(oof[[f"prob_{c}" for c in TOY.class_dirs]].sum(axis=1), 1, atol=1e-4)
    saved = json.loads((tmp_path / "toy" / "metrics.json").read_text())
    assert saved["archs"]["simplecnn"]["accuracy"]["mean"] == m["archs"]["simplecnn"]["accuracy"]["mean"]
    assert saved["archs"]["simplecnn"]["accuracy"]["pooled"] > 0.8  # the toy task is easy
    assert "protocol" in saved and saved["split_sha256"] == toy_checkpoints["sha"]
    assert saved["archs"]["simplecnn"]["inference"] == {"device": "cpu", "hardware": hardware(CPU), "batch_size": 128,
                                                        "precision": precision_policy(CPU).name}


def test_each_test_fold_is_scored_by_its_own_fold_model(biased_checkpoints, tmp_path):
    """Fold k's model always predicts FOLD_CLASS[k]: OOF rows of fold k must show that class, with and without TTA."""
    for tta in (False, True):
        evaluate_dataset(TOY, biased_checkpoints["data_root"], archs=["simplecnn"], tta=tta,
                         splits_path=biased_checkpoints["manifest"], checkpoints_dir=biased_checkpoints["checkpoints"],
                         results_base=tmp_path)
        oof = pd.read_csv(oof_path(tmp_path / "toy", entry_name("simplecnn", tta)))
        assert oof.groupby("fold")["pred"].unique().map(list).to_dict() == {k: [c] for k, c in FOLD_CLASS.items()}
    saved = json.loads((tmp_path / "toy" / "metrics.json").read_text())
    tta_entry = saved["archs"][entry_name("simplecnn", True)]
    assert tta_entry["tta"] and tta_entry["inference"]["precision"] == precision_policy(CPU).name


def test_evaluate_refuses_checkpoints_of_another_split(toy_checkpoints, tmp_path):
    path = swapped_folds_manifest(toy_checkpoints, tmp_path / "other.csv")
    with pytest.raises(CheckpointError, match="another split"):
        evaluate_dataset(TOY, toy_checkpoints["data_root"], archs=["simplecnn"], splits_path=path,
                         checkpoints_dir=toy_checkpoints["checkpoints"], results_base=tmp_path)


@pytest.mark.parametrize("dataset", ["smids", "hushem"])
def test_committed_metrics_are_of_the_shipped_weights(dataset):
    """Every entry of the committed metrics.json (one view and TTA) was computed with the fold models that ship:
    replacing a fold's checkpoint and refreshing only one of its entries leaves the other stale, and this fails."""
    path = PROJECT_ROOT / "results" / dataset / "metrics.json"
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    if not metrics.get("full_dataset"):
        pytest.skip(f"no committed full-data metrics.json for {dataset}")
    for name, entry in metrics["archs"].items():
        arch, _ = parse_entry(name)
        shipped = {str(k): c["weights_sha256"] for k, c in sorted(fold_cards(dataset, arch).items())}
        assert entry["fold_weights_sha256"] == shipped, name


def test_the_input_size_is_one_number_or_each_size_with_its_folds():
    from spermlib.evaluation.evaluate import input_size_of
    from spermlib.evaluation.report import _px

    assert input_size_of({0: {"input_size": 160}, 1: {"input_size": 160}}) == 160
    mixed = input_size_of({k: {"input_size": 160 if k in (1, 4) else 224} for k in range(5)})
    assert mixed == "224 px on folds 0, 2, 3, 160 px on folds 1, 4"
    assert input_size_of({0: {"input_size": 224}, 1: {"input_size": 160}}) == "224 px on fold 0, 160 px on fold 1"
    assert (_px(160), _px(mixed)) == ("160 px", mixed)
