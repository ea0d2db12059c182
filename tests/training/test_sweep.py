"""The sweep picks its winner from inner-val cards, only among configurations with every fold."""

from __future__ import annotations

import json
from pathlib import Path

from tools.sweep import job_command, pick_winner, summarize

CLASSES = ["01_Normal", "02_Tapered", "03_Pyriform", "04_Amorphous"]


def _cards(out: Path, name: str, f1s: list[float], nll: float = 0.5) -> None:
    d = out / name / "hushem" / "effnet_cbam"
    d.mkdir(parents=True)
    for k, f1 in enumerate(f1s):
        card = {"arch": "effnet_cbam", "backbone": "x", "classes": CLASSES, "input_size": 224, "mean": [0.5] * 3,
                "std": [0.5] * 3, "dataset": "hushem", "fold": k, "best_epoch": 3, "training_seconds": 9.0,
                "inner_val": {"accuracy": f1, "macro_f1": f1, "nll": nll}}
        (d / f"fold{k}.json").write_text(json.dumps(card))


def test_winner_is_the_best_complete_configuration_with_nll_breaking_ties(tmp_path):
    _cards(tmp_path, "steady", [0.9, 0.9])
    _cards(tmp_path, "partial", [0.99])  # one fold missing (killed at the deadline): never the winner
    _cards(tmp_path, "calibrated", [0.9, 0.9], nll=0.3)
    configs = {"steady": "", "partial": "--input-size 224", "calibrated": "--epochs 100", "absent": "--balanced"}
    rows = summarize("hushem", "effnet_cbam", configs, tmp_path, folds=2)
    assert rows["partial"]["folds_done"] == [0] and not rows["partial"]["complete"]
    assert rows["absent"]["mean_macro_f1"] is None
    assert pick_winner(rows) == "calibrated"
    assert pick_winner({"partial": rows["partial"]}) is None


def test_jobs_are_the_projects_own_train_command(tmp_path):
    argv = job_command("hushem", "effnet", 3, "px224", tmp_path, "--input-size 224", "--device cuda")
    assert argv[1:5] == ["-m", "spermlib", "train", "--dataset"]
    assert argv[argv.index("--fold") + 1] == "3" and argv[argv.index("--checkpoints") + 1] == str(tmp_path / "px224")
    assert argv[-4:] == ["--input-size", "224", "--device", "cuda"]
