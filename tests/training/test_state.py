"""TrainState: what a resumed run reads back is exactly what the interrupted run had."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from spermlib.models import create_model
from spermlib.training.loop import build_optimizer, make_ema
from spermlib.training.recipe import Recipe
from spermlib.training.state import TrainState, clear_state, read_state

R = Recipe(ema_decay=0.9)


def _step(state: TrainState, seed: int, step: int) -> None:
    """One AdamW step on random data, then an EMA update (fills the optimizer's and the EMA's state)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout
    x, y = torch.rand(4, 3, 32, 32, generator=g), torch.randint(0, 3, (4,), generator=g)
    state.model.train()
    loss = nn.functional.cross_entropy(state.model(x), y)
    state.optimizer.zero_grad()
    loss.backward()
    state.optimizer.step()
    state.ema.update(state.model, step=step)


def _fresh_state(seed: int) -> TrainState:
    torch.manual_seed(seed)
    model, _ = create_model("simplecnn", 3)
    return TrainState(model, build_optimizer(model, R), make_ema(model, R), config={"arch": "simplecnn", "fold": 2})


@pytest.fixture
def trained_state() -> TrainState:
    state = _fresh_state(0)
    for step in (1, 2):
        _step(state, step, step)
    state.record_epoch({"epoch": 0, "train_loss": 1.5}, {"accuracy": 0.5, "macro_f1": 0.4, "nll": 1.1}, 3.25)
    _step(state, 3, 3)  # the model moves on after the best epoch: best weights ≠ current ones
    state.record_epoch({"epoch": 1, "train_loss": 1.2}, {"accuracy": 0.4, "macro_f1": 0.3, "nll": 1.3}, 2.5)
    return state


def _assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k].cpu(), b[k].cpu()), k


def test_save_then_restore_round_trips_everything(tmp_path, trained_state):
    trained_state.save(tmp_path)
    restored = _fresh_state(1)  # other initial weights, empty optimizer state
    assert not torch.equal(restored.model.classifier.weight, trained_state.model.classifier.weight)
    restored.restore(*read_state(tmp_path))

    _assert_same_tensors(restored.model.state_dict(), trained_state.model.state_dict())
    _assert_same_tensors(restored.ema.module.state_dict(), trained_state.ema.module.state_dict())
    _assert_same_tensors(restored.best_weights, trained_state.best_weights)
    opt_a, opt_b = restored.optimizer.state_dict(), trained_state.optimizer.state_dict()
    assert opt_a["state"].keys() == opt_b["state"].keys() and len(opt_a["state"]) > 0
    for pid in opt_a["state"]:
        _assert_same_tensors(opt_a["state"][pid], opt_b["state"][pid])
    assert json.loads(json.dumps(opt_a["param_groups"])) == json.loads(json.dumps(opt_b["param_groups"]))
    assert (restored.epoch, restored.history, restored.best) == (1, trained_state.history, trained_state.best)
    assert restored.best["epoch"] == 0 and restored.train_seconds == 5.75
    # The best weights are those of epoch 0, not the current ones.
    assert not torch.equal(restored.best_weights["classifier.weight"], restored.ema.module.classifier.weight)

    # And the restored state trains on exactly as the original does.
    _step(restored, 9, 4)
    _step(trained_state, 9, 4)
    _assert_same_tensors(restored.model.state_dict(), trained_state.model.state_dict())
    _assert_same_tensors(restored.ema.module.state_dict(), trained_state.ema.module.state_dict())


def test_state_files_keep_their_layout(tmp_path, trained_state):
    # Runs interrupted by an earlier version of the code resume only if these names stay put.
    trained_state.save(tmp_path)
    tensors = load_file(str(tmp_path / "state.safetensors"))
    assert {k.split(".", 1)[0] for k in tensors} == {"model", "ema", "best", "opt"}
    assert "opt.0.exp_avg" in tensors or "opt.1.exp_avg" in tensors
    meta = json.loads((tmp_path / "state.json").read_text())
    assert list(meta) == ["config", "epoch", "history", "best", "train_seconds", "optimizer"]
    assert meta["config"] == {"arch": "simplecnn", "fold": 2} and meta["epoch"] == 1
    assert set(meta["optimizer"]) == {"param_groups", "scalars"}
    assert [g["name"] for g in meta["optimizer"]["param_groups"]] == ["backbone", "head"]
    assert not list(tmp_path.glob("*.tmp"))  # written under temporary names, then renamed


def test_state_without_ema_or_best(tmp_path):
    state = _fresh_state(0)
    state.ema = None
    state.save(tmp_path)
    assert {k.split(".", 1)[0] for k in load_file(str(tmp_path / "state.safetensors"))} == {"model"}
    restored = _fresh_state(1)
    restored.ema = None
    restored.restore(*read_state(tmp_path))
    assert restored.best_weights is None and restored.epoch == -1
    _assert_same_tensors(restored.model.state_dict(), state.model.state_dict())


def test_half_written_or_cleared_state_is_no_state(tmp_path, trained_state):
    assert read_state(tmp_path) is None
    trained_state.save(tmp_path)
    (tmp_path / "state.json").unlink()
    assert read_state(tmp_path) is None
    trained_state.save(tmp_path)
    clear_state(tmp_path)
    assert read_state(tmp_path) is None and not list(tmp_path.iterdir())


def test_model_selection_keeps_best_and_breaks_ties_by_nll():
    state = _fresh_state(0)
    scores = [(0.5, 1.0), (0.7, 0.9), (0.7, 0.8), (0.7, 0.85), (0.6, 0.1)]
    kept = [state.record_epoch({"epoch": e}, {"accuracy": 0.0, "macro_f1": f, "nll": n}, 1.0)
            for e, (f, n) in enumerate(scores)]
    assert kept == [True, True, True, False, False]
    assert state.best == {"epoch": 2, "accuracy": 0.0, "macro_f1": 0.7, "nll": 0.8}


@pytest.mark.parametrize(("best_epoch", "epoch", "frozen_epochs", "stop"), [
    (-1, 20, 0, False),  # nothing scored yet
    (3, 6, 0, False),  # 2 epochs without improvement: patience 3 not used up
    (3, 7, 0, True),
    (0, 5, 3, False),  # the frozen stage does not use up patience
    (0, 6, 3, True),
])
def test_early_stopping_rule(best_epoch, epoch, frozen_epochs, stop):
    state = _fresh_state(0)
    state.best["epoch"] = best_epoch
    assert state.should_stop(epoch, patience=3, frozen_epochs=frozen_epochs) is stop
