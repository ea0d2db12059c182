"""The checkpoint card a finished fold gets."""

from __future__ import annotations

from dataclasses import asdict

import torch

from spermlib.models import ModelInfo, create_model
from spermlib.training.card import build_card, git_commit, run_config
from spermlib.training.fold_data import FoldData
from spermlib.training.loop import LoopSettings, build_optimizer
from spermlib.training.recipe import Recipe
from spermlib.training.state import TrainState
from tests.model_fixtures import TOY

# The card's fields, in order: readers (dashboard, evaluate, tuning, sweep) rely on these names.
CARD_FIELDS = ["dataset", "fold", "arch", "backbone", "pretrained_source", "classes", "display_names", "input_size",
               "mean", "std", "split_manifest", "split_sha256", "n_train", "n_inner_val", "recipe", "epochs_run",
               "best_epoch", "stopped_early", "inner_val", "history", "training_seconds", "device", "bf16",
               "torch_threads", "git_commit", "spermlib_version", "torch_version", "created"]


def test_card_says_what_was_trained_how_and_how_well():
    r = Recipe(epochs=9, ema_decay=0.5)
    info = ModelInfo("effnet", "tf_efficientnet_lite0", "offline ImageNet", (0.5, 0.4, 0.3), (0.2, 0.2, 0.25))
    data = FoldData(torch.zeros(7, 3, 8, 8, dtype=torch.uint8), torch.zeros(7, dtype=torch.long),
                    torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(2, dtype=torch.long))
    model, _ = create_model("simplecnn", 3)
    state = TrainState(model, build_optimizer(model, r), config=run_config(TOY, "effnet", 3, r, 64, info, "abc", data))
    for epoch, f1 in enumerate([0.4, 0.7, 0.6]):
        state.record_epoch({"epoch": epoch}, {"accuracy": f1, "macro_f1": f1, "nll": 1.0}, 10.04)
    s = LoopSettings(r, torch.device("cpu"), False, info.mean, info.std)
    final = {"accuracy": 0.5, "macro_f1": 0.69, "nll": 0.9}
    card = build_card(TOY, state, final, True, s)

    assert list(card) == CARD_FIELDS
    assert (card["dataset"], card["fold"], card["arch"], card["input_size"]) == ("toy", 3, "effnet", 64)
    assert (card["backbone"], card["pretrained_source"]) == ("tf_efficientnet_lite0", "offline ImageNet")
    assert card["classes"] == list(TOY.class_dirs) and card["display_names"] == list(TOY.display_names)
    assert card["mean"] == [0.5, 0.4, 0.3] and card["std"] == [0.2, 0.2, 0.25]
    assert (card["split_manifest"], card["split_sha256"]) == ("splits/toy.csv", "abc")
    assert (card["n_train"], card["n_inner_val"]) == (7, 2)
    assert card["recipe"] == asdict(r)
    assert card["epochs_run"] == 3 and card["best_epoch"] == 2 and card["stopped_early"] is True
    assert card["inner_val"] == final and card["history"] == state.history
    assert card["training_seconds"] == 30.1 and card["device"] == "cpu" and card["bf16"] is False


def test_git_commit_comes_from_the_environment_when_set(monkeypatch):
    monkeypatch.setenv("SPERMLIB_GIT_COMMIT", "abc1234")
    assert git_commit() == "abc1234"
    monkeypatch.delenv("SPERMLIB_GIT_COMMIT")
    assert git_commit() != "abc1234" and git_commit()
