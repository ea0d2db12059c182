"""spermlib.training.sweep without Ray: the search space, and the nested per-fold selection from inner-val cards.

(The sweep on a two-node Ray cluster is in tests/inference/test_distributed.py, beside the Ray prediction.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spermlib.data.datasets import get_dataset
from spermlib.errors import SpermlibError
from spermlib.store.cards import checkpoint_path
from spermlib.training.sweep import NESTED, SweepJob, comparison_runs, grid, load_space, parse_param, select_nested

HUSHEM = get_dataset("hushem")


def test_params_are_typed_by_the_recipe_and_unknown_fields_are_named() -> None:
    assert parse_param("lr=1e-3,3e-4") == ("lr", [0.001, 0.0003])
    assert parse_param("batch_size=16") == ("batch_size", [16])
    assert parse_param("balanced_sampling=true,false") == ("balanced_sampling", [True, False])
    with pytest.raises(SpermlibError, match="unknown recipe field 'learning_rate'.*mixup_alpha"):
        parse_param("learning_rate=1")
    with pytest.raises(SpermlibError, match="not a int"):
        parse_param("epochs=ten")
    with pytest.raises(SpermlibError, match="FIELD=V1"):
        parse_param("lr")


def test_grid_is_the_product_of_swept_fields_with_fixed_ones_everywhere(tmp_path: Path) -> None:
    space_file = tmp_path / "space.yaml"
    space_file.write_text("lr: [0.001, 0.003]\nmixup_alpha: [0, 0.2]\nepochs: 5\n")
    configs = grid(load_space(space_file))
    assert list(configs) == ["lr-0.001+mixup_alpha-0", "lr-0.001+mixup_alpha-0.2", "lr-0.003+mixup_alpha-0",
                             "lr-0.003+mixup_alpha-0.2"]
    assert configs["lr-0.003+mixup_alpha-0.2"] == {"epochs": 5, "lr": 0.003, "mixup_alpha": 0.2}
    assert grid({"epochs": [3]}) == {"base": {"epochs": 3}}


def _card(out: Path, name: str, fold: int, f1: float, nll: float = 0.5) -> None:
    path = checkpoint_path(HUSHEM, "simplecnn", fold, out / name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(f"{name}-{fold}".encode())  # stands in for the weights: selection copies, never loads them
    card = {"arch": "simplecnn", "backbone": "x", "classes": list(HUSHEM.class_dirs), "input_size": 32,
            "mean": [0.5] * 3, "std": [0.5] * 3, "dataset": "hushem", "fold": fold, "split_sha256": "s",
            "best_epoch": 1, "training_seconds": 1.0, "inner_val": {"accuracy": f1, "macro_f1": f1, "nll": nll},
            "weights_sha256": f"{fold}" * 64}
    path.with_suffix(".json").write_text(json.dumps(card))


def test_each_outer_fold_picks_its_winner_on_its_own_inner_validation(tmp_path: Path) -> None:
    # "a" wins fold 0 and "b" fold 1: a mean over folds would pick one configuration for both folds.
    _card(tmp_path, "a", 0, 0.9)
    _card(tmp_path, "a", 1, 0.5)
    _card(tmp_path, "b", 0, 0.6)
    _card(tmp_path, "b", 1, 0.7)
    _card(tmp_path, "c", 0, 0.9, nll=0.1)  # ties "a" on fold 0 with a lower NLL; stopped by ASHA on fold 1
    job = SweepJob(spec=HUSHEM, arch="simplecnn", root="", out=str(tmp_path), configs={"a": {}, "b": {}, "c": {}},
                   folds=[0, 1])
    summary = select_nested(job)
    assert {k: f["winner"] for k, f in summary["per_fold"].items()} == {0: "c", 1: "b"}
    assert summary["complete"] == ["a", "b"]
    for fold, winner in ((0, "c"), (1, "b")):
        nested = checkpoint_path(HUSHEM, "simplecnn", fold, tmp_path / NESTED)
        assert nested.read_bytes() == f"{winner}-{fold}".encode()
    assert json.loads((tmp_path / "sweep.json").read_text())["per_fold"]["1"]["winner"] == "b"
    runs = comparison_runs(job, summary, "shipped", tmp_path / "no-baseline")
    assert list(runs) == ["a", "b", NESTED]  # no baseline cards: not compared; "c" lacks fold 1


def test_a_fold_no_trial_finished_has_no_winner_and_no_nested_run(tmp_path: Path) -> None:
    _card(tmp_path, "a", 0, 0.9)
    job = SweepJob(spec=HUSHEM, arch="simplecnn", root="", out=str(tmp_path), configs={"a": {}}, folds=[0, 1])
    summary = select_nested(job)
    assert summary["per_fold"][1] == {"scores": {}, "winner": None}
    assert NESTED not in comparison_runs(job, summary, "shipped", tmp_path / "none")
