"""The command line end to end on the bundled sample: train every fold, evaluate, predict."""

from __future__ import annotations

import json

import pandas as pd

from spermlib.cli import main
from spermlib.data.datasets import SAMPLE_DATA_ROOT


def test_train_evaluate_predict_on_bundled_sample(tmp_path, capsys):
    ck, runs, res = tmp_path / "ck", tmp_path / "runs", tmp_path / "res"
    common = ["--dataset", "hushem", "--data-dir", str(SAMPLE_DATA_ROOT)]
    rc = main(["train", *common, "--arch", "simplecnn", "--fold", "all", "--epochs", "1", "--input-size", "48",
               "--batch-size", "16", "--rotate-deg", "180", "--ema-decay", "0.5", "--checkpoints", str(ck),
               "--runs", str(runs)])
    assert rc == 0
    cards = sorted((ck / "hushem" / "simplecnn").glob("fold*.json"))
    assert len(cards) == 5
    card = json.loads(cards[0].read_text())
    assert card["input_size"] == 48
    assert card["recipe"]["rotate_deg"] == 180 and card["recipe"]["ema_decay"] == 0.5
    # A second run skips finished folds instead of retraining them.
    capsys.readouterr()
    assert main(["train", *common, "--arch", "simplecnn", "--fold", "0", "--checkpoints", str(ck),
                 "--runs", str(runs), "--epochs", "1", "--input-size", "48", "--batch-size", "16"]) == 0
    assert "checkpoint exists" in capsys.readouterr().out

    assert main(["evaluate", *common, "--checkpoints", str(ck), "--results", str(res)]) == 0
    oof = pd.read_csv(res / "hushem" / "oof_simplecnn.csv")
    assert len(oof) == 80 and set(oof["fold"]) == {0, 1, 2, 3, 4}
    metrics = json.loads((res / "hushem" / "metrics.json").read_text())
    assert metrics["full_dataset"] is False and len(metrics["archs"]["simplecnn"]["per_fold"]) == 5

    capsys.readouterr()
    img = next((SAMPLE_DATA_ROOT / "HuSHeM" / "02_Tapered").iterdir())
    bad = tmp_path / "bad.bmp"
    bad.write_bytes(b"BM" + b"\x00" * 10)
    rc = main(["predict", str(img), str(bad), "--dataset", "hushem", "--arch", "simplecnn", "--checkpoints", str(ck)])
    out = capsys.readouterr().out
    assert rc == 1 and "ERROR" in out and "bad.bmp" in out and img.name in out


def test_predict_without_checkpoints_is_a_clear_error(tmp_path, capsys):
    img = next((SAMPLE_DATA_ROOT / "SMIDS" / "Non-Sperm").iterdir())
    rc = main(["predict", str(img), "--dataset", "smids", "--checkpoints", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "no checkpoint for smids/effnet_cbam" in err and "python -m spermlib train" in err


def test_unknown_data_dir_is_a_clear_error(tmp_path, capsys):
    rc = main(["splits", "--dataset", "smids", "--data-dir", str(tmp_path)])
    assert rc == 2 and "holds neither" in capsys.readouterr().err
