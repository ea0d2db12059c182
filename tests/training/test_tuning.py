"""Tuning runs are compared on inner validation only, on shared folds of the same split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spermlib.cli import main
from spermlib.data.datasets import get_dataset
from spermlib.evaluation.report import results_markdown
from spermlib.store.checkpoints import CheckpointError
from spermlib.training.tuning import compare_configs, format_comparison, record_comparison

HUSHEM = get_dataset("hushem")


def _write_cards(root: Path, folds: dict[int, float], sha: str = "abc", arch: str = "effnet_cbam", **recipe) -> Path:
    """Cards (and placeholder weight files) as `train --checkpoints root` leaves them: fold -> inner-val F1."""
    d = root / "hushem" / arch
    d.mkdir(parents=True)
    for k, f1 in folds.items():
        (d / f"fold{k}.safetensors").write_bytes(b"")  # only the card is read
        card = {"arch": arch, "backbone": "tf_efficientnet_lite0", "pretrained_source": "offline", "input_size": 160,
                "classes": list(HUSHEM.class_dirs), "mean": [0.5] * 3, "std": [0.5] * 3, "dataset": "hushem",
                "fold": k, "split_sha256": sha, "n_inner_val": 26, "best_epoch": 10 + k, "training_seconds": 120,
                "recipe": {"batch_size": 32, "epochs": 40, "lr": 1e-3, "input_size": 0, **recipe},
                "inner_val": {"accuracy": f1 + 0.01, "macro_f1": f1}, "weights_sha256": f"{k}" * 64}
        (d / f"fold{k}.json").write_text(json.dumps(card))
    return root


def test_compare_configs_uses_shared_folds_and_names_the_change(tmp_path):
    shipped = _write_cards(tmp_path / "shipped", {0: 0.8, 1: 0.9, 2: 0.7})
    bs16 = _write_cards(tmp_path / "bs16", {0: 0.9, 1: 0.95}, batch_size=16)
    comp = compare_configs(HUSHEM, "effnet_cbam", {"shipped": shipped, "bs16": bs16})
    base, tuned = comp["configs"]
    assert base["folds"] == tuned["folds"] == [0, 1]  # fold 2 exists only for the baseline: left out
    assert base["inner_val_macro_f1"] == pytest.approx(0.85) and tuned["inner_val_macro_f1"] == pytest.approx(0.925)
    assert base["changes"] == {} and tuned["changes"] == {"batch_size": 16}
    assert tuned["inner_val_images"] == 52 and tuned["best_epochs"] == [10, 11] and tuned["training_minutes"] == 4.0
    text = format_comparison(comp)
    assert "bs16" in text and "batch_size=16" in text and "baseline" in text


def test_recipe_fields_newer_than_a_card_count_as_off(tmp_path):
    shipped = _write_cards(tmp_path / "shipped", {0: 0.8})  # written before ema_decay existed
    no_ema = _write_cards(tmp_path / "no_ema", {0: 0.8}, ema_decay=0.0)
    ema = _write_cards(tmp_path / "ema", {0: 0.9}, ema_decay=0.99, rotate_deg=180.0)
    comp = compare_configs(HUSHEM, "effnet_cbam", {"shipped": shipped, "no_ema": no_ema, "ema": ema})
    assert [c["changes"] for c in comp["configs"]] == [{}, {}, {"ema_decay": 0.99, "rotate_deg": 180.0}]


def test_compare_configs_refuses_incomparable_runs(tmp_path):
    shipped = _write_cards(tmp_path / "shipped", {0: 0.8})
    with pytest.raises(CheckpointError, match="different split"):
        compare_configs(HUSHEM, "effnet_cbam", {"a": shipped, "b": _write_cards(tmp_path / "b", {0: 0.8}, sha="zzz")})
    with pytest.raises(CheckpointError, match="share no fold"):
        compare_configs(HUSHEM, "effnet_cbam", {"a": shipped, "c": _write_cards(tmp_path / "c", {1: 0.8})})
    with pytest.raises(CheckpointError, match="no hushem/effnet_cbam checkpoints"):
        compare_configs(HUSHEM, "effnet_cbam", {"a": shipped, "d": tmp_path / "empty"})


def test_recorded_comparison_reaches_the_readme_block(tmp_path):
    shipped = _write_cards(tmp_path / "shipped", {0: 0.8, 1: 0.9})
    mnv2 = _write_cards(tmp_path / "mnv2", {0: 0.85, 1: 0.85}, lr=5e-4)
    res = tmp_path / "results"
    comparison = compare_configs(HUSHEM, "effnet_cbam", {"shipped": shipped, "mnv2": mnv2})
    record_comparison(comparison, res / "hushem" / "tuning.json")
    md = results_markdown(res)
    assert "| EfficientNet + CBAM | shipped: baseline recipe | 2 | 86.0 % | 0.850 | 10, 11 | 4 min |" in md
    assert "| EfficientNet + CBAM | mnv2: lr = 0.0005 | 2 | 86.0 % | 0.850 |" in md
    assert "optimistic" in md


def test_tune_cli_records_and_rejects_a_bad_run_argument(tmp_path, capsys):
    shipped = _write_cards(tmp_path / "shipped", {0: 0.8})
    other = _write_cards(tmp_path / "other", {0: 0.9}, epochs=80)
    res = tmp_path / "results"
    assert main(["tune", "--dataset", "hushem", "--checkpoints", str(shipped), "--run", f"e80={other}",
                 "--record", "--results", str(res)]) == 0
    assert "epochs=80" in capsys.readouterr().out
    assert json.loads((res / "hushem" / "tuning.json").read_text())["archs"]["effnet_cbam"]["baseline"] == "shipped"
    assert main(["tune", "--dataset", "hushem", "--checkpoints", str(shipped), "--run", f"e80={other}",
                 "--baseline-name", "recipe-v1", "--record", "--results", str(res)]) == 0
    assert json.loads((res / "hushem" / "tuning.json").read_text())["archs"]["effnet_cbam"]["baseline"] == "recipe-v1"
    assert main(["tune", "--dataset", "hushem", "--checkpoints", str(shipped), "--run", "no-equals-sign"]) == 2
    assert "NAME=FOLDER" in capsys.readouterr().err


def test_merge_keeps_earlier_rows_of_the_same_baseline_and_marks_where_runs_trained(tmp_path):
    v1 = _write_cards(tmp_path / "v1", {0: 0.8, 1: 0.8})
    gone = _write_cards(tmp_path / "gone", {0: 0.82, 1: 0.82}, lr=5e-4)
    tuned = _write_cards(tmp_path / "tuned", {0: 0.9, 1: 0.9}, epochs=100)
    for card in (tmp_path / "tuned" / "hushem" / "effnet_cbam").glob("*.json"):
        card.write_text(json.dumps({**json.loads(card.read_text()), "device": "cuda:0"}))
    path = tmp_path / "results" / "hushem" / "tuning.json"
    record_comparison(compare_configs(HUSHEM, "effnet_cbam", {"v1": v1, "gone": gone}), path)
    # "gone" has no checkpoints any more; a new round against the same baseline keeps its row.
    record_comparison(compare_configs(HUSHEM, "effnet_cbam", {"v1": v1, "tuned": tuned}), path, merge=True)
    rows = json.loads(path.read_text())["archs"]["effnet_cbam"]["configs"]
    assert [r["name"] for r in rows] == ["v1", "gone", "tuned"]
    assert rows[2]["device"] == "cuda" and rows[2]["changes"] == {"epochs": 100}
    md = results_markdown(tmp_path / "results")
    assert "| EfficientNet + CBAM | tuned: epochs = 100 | 2 | 91.0 % | 0.900 | 10, 11 | 4 min (GPU) |" in md
    # Without merge the table is replaced; against another baseline a merge would misalign the changes.
    record_comparison(compare_configs(HUSHEM, "effnet_cbam", {"v1": v1, "tuned": tuned}), path)
    assert [r["name"] for r in json.loads(path.read_text())["archs"]["effnet_cbam"]["configs"]] == ["v1", "tuned"]
    with pytest.raises(ValueError, match="baseline 'v1'"):
        record_comparison(compare_configs(HUSHEM, "effnet_cbam", {"tuned": tuned, "v1": v1}), path, merge=True)
