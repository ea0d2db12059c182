"""An own ImageFolder dataset end to end through the command line: splits → train (1 tiny epoch) → evaluate →
robustness → report → predict (a folder), every command resolving ``--dataset`` by path or by registered name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spermlib.cli import main
from spermlib.store.cards import available_folds, read_card
from spermlib.store.cards import checkpoint_path as ckpt
from tests.data.test_own_dataset import own_folder, registry  # noqa: F401  (fixture)

TINY = ["--arch", "simplecnn", "--epochs", "1", "--input-size", "32", "--batch-size", "8"]


def test_splits_train_evaluate_robustness_report_predict(tmp_path: Path, registry: Path,  # noqa: F811
                                                         capsys: pytest.CaptureFixture) -> None:
    root = own_folder(tmp_path)
    manifest, ckpts, results = tmp_path / "lab.csv", tmp_path / "ckpts", tmp_path / "results"
    store = ["--checkpoints", str(ckpts)]
    assert main(["splits", "--dataset", str(root), "--name", "lab", "--out", str(manifest)]) == 0
    assert main(["train", "--dataset", "lab", "--splits", str(manifest), *TINY, *store,
                 "--runs", str(tmp_path / "runs")]) == 0
    assert available_folds("lab", "simplecnn", ckpts) == [0, 1, 2, 3, 4]
    card = read_card(ckpt("lab", "simplecnn", 0, ckpts))
    assert (card["dataset"], card["classes"], card["input_size"]) == ("lab", ["normal", "tapered"], 32)

    scoring = ["--dataset", str(root), "--splits", str(manifest), *store, "--results", str(results)]
    assert main(["evaluate", *scoring]) == 0
    metrics = json.loads((results / "lab" / "metrics.json").read_text())
    assert metrics["classes"] == ["normal", "tapered"] and metrics["archs"]["simplecnn"]["n_images"] == 20
    assert main(["robustness", *scoring]) == 0
    capsys.readouterr()
    assert main(["report", "--dataset", "lab", "--results", str(results)]) == 0
    section = capsys.readouterr().out
    assert section.startswith("### MyLab") and "SimpleCNN" in section and "paper" not in section

    assert main(["predict", str(root / "tapered"), "--dataset", "lab", "--arch", "simplecnn", *store, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in rows] == sorted(str(p) for p in (root / "tapered").iterdir())
    assert all(set(r["probabilities"]) == {"normal", "tapered"} and r["error"] is None for r in rows)
