"""WiSE-FT weight averaging: the midpoint really is one, the card says what it is, unrelated models are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spermlib.errors import SpermlibError
from spermlib.store.cards import checkpoint_path
from spermlib.store.checkpoints import load_checkpoint
from spermlib.training.train import FoldData, Recipe, train_fold
from spermlib.training.weight_average import average_fold, interpolate_state
from tests.model_fixtures import TOY, toy_tensors

TINY = dict(batch_size=8, epochs=2, patience=50, input_size=48)


@pytest.fixture(scope="module")
def clean_and_stage(tmp_path_factory):
    """A clean fold-1 model, its hardened continuation (train --init-from), and an unrelated model."""
    base = tmp_path_factory.mktemp("wise")
    x, y = toy_tensors(8, seed=5)
    xv, yv = toy_tensors(2, seed=6)
    data = FoldData(x, y, xv, yv)
    kw = dict(manifest_sha256="abc", progress=False)
    train_fold(TOY, "simplecnn", 1, data, Recipe.for_arch("simplecnn", **TINY), checkpoints_dir=base / "clean",
               runs_dir=base / "r1", **kw)
    stage = Recipe.for_arch("simplecnn", **{**TINY, "epochs": 1}, corrupt_p=1.0, keep_last=True)
    train_fold(TOY, "simplecnn", 1, data, stage, init_from=base / "clean", checkpoints_dir=base / "stage",
               runs_dir=base / "r2", **kw)
    train_fold(TOY, "simplecnn", 1, data, Recipe.for_arch("simplecnn", **TINY, seed=7), checkpoints_dir=base / "other",
               runs_dir=base / "r3", **kw)
    return base, data


def test_interpolation_is_the_weighted_mean_of_floats_and_keeps_integer_buffers():
    a = {"w": torch.tensor([0.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([4.0, 6.0]), "n": torch.tensor(9)}
    out = interpolate_state(a, b, 0.25)
    assert torch.allclose(out["w"], torch.tensor([3.0, 5.0])) and out["n"].item() == 9
    with pytest.raises(SpermlibError):
        interpolate_state(a, {"w": b["w"]}, 0.5)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_average_fold_writes_the_interpolated_model_with_its_own_card(clean_and_stage, alpha):
    base, data = clean_and_stage
    out = base / f"wise{alpha}"
    card = average_fold(TOY, "simplecnn", 1, base / "clean", base / "stage", alpha, out, data, device="cpu")
    clean, clean_card = load_checkpoint(checkpoint_path(TOY, "simplecnn", 1, base / "clean"))
    stage, stage_card = load_checkpoint(checkpoint_path(TOY, "simplecnn", 1, base / "stage"))
    mixed, stored = load_checkpoint(checkpoint_path(TOY, "simplecnn", 1, out))
    for name, value in mixed.state_dict().items():
        if value.is_floating_point():
            expected = alpha * clean.state_dict()[name] + (1 - alpha) * stage.state_dict()[name]
            assert torch.allclose(value, expected, atol=2e-3, rtol=2e-3), name  # stored as fp16
    assert stored["weight_average"]["alpha_clean"] == alpha
    assert stored["weight_average"]["clean_weights_sha256"] == clean_card["weights_sha256"]
    assert stored["weight_average"]["stage_weights_sha256"] == stage_card["weights_sha256"]
    assert stored["inner_val"] == card["inner_val"] and 0.0 <= card["inner_val"]["accuracy"] <= 1.0
    assert stored["recipe"] == stage_card["recipe"]  # the stage's recipe and time travel with the model


def test_a_model_that_did_not_start_from_the_clean_one_is_refused(clean_and_stage):
    base, data = clean_and_stage
    with pytest.raises(SpermlibError, match="did not start from"):
        average_fold(TOY, "simplecnn", 1, base / "other", base / "stage", 0.5, base / "bad", data, device="cpu")
    with pytest.raises(SpermlibError, match="alpha"):
        average_fold(TOY, "simplecnn", 1, base / "clean", base / "stage", 1.5, base / "bad", data, device="cpu")


def test_shipped_averaged_cards_name_their_parents_relative_to_the_project():
    """A card read on another machine must not point into this one's file system."""
    import json

    from spermlib.store.paths import PROJECT_ROOT

    cards = [json.loads(p.read_text()) for p in (PROJECT_ROOT / "checkpoints").glob("*/*/fold*.json")]
    averaged = [c["weight_average"] for c in cards if c.get("weight_average")]
    assert averaged, "the shipped checkpoints include WiSE-FT averages"
    for wa in averaged:
        assert not Path(wa["clean"]).is_absolute() and not Path(wa["stage"]).is_absolute(), wa
