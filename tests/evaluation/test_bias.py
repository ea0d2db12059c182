"""``spermlib bias``: per fold model, the decision on its inner validation alone, written into its card
(only where taken) and into decision_bias.json."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

import spermlib.evaluation.bias as db
import spermlib.evaluation.evaluate as ev
from spermlib.data.splits import fold_parts, write_manifest
from spermlib.inference.core import InferenceModel
from spermlib.store.cards import checkpoint_path, read_card, set_card_field
from spermlib.store.checkpoints import load_checkpoint
from spermlib.training.train import FoldData, Recipe, train_fold
from tests.model_fixtures import FAST, TOY, toy_folder, toy_tensors


@pytest.fixture(scope="module")
def toy_with_inner_validation(tmp_path_factory) -> dict:
    """Like ``toy_checkpoints``, with enough images per fold for the split's inner validation (the shared toy's 5
    per class and fold are fewer than its stratified split needs)."""
    base = tmp_path_factory.mktemp("toy_inner")
    manifest = toy_folder(base / "data", n_per_class=24, seed=4)
    sha = write_manifest(manifest, base / "toy.csv")
    x, y = toy_tensors(30, seed=5)
    xv, yv = toy_tensors(6, seed=6)
    for fold in (0, 1):
        train_fold(TOY, "simplecnn", fold, FoldData(x, y, xv, yv), Recipe.for_arch("simplecnn", **FAST, seed=fold),
                   manifest_sha256=sha, checkpoints_dir=base / "checkpoints", runs_dir=base / "runs", progress=False)
    return {"data_root": base / "data", "manifest": base / "toy.csv", "sha": sha, "checkpoints": base / "checkpoints"}


def test_decisions_read_inner_validation_only_and_cards_carry_exactly_the_taken_biases(toy_with_inner_validation,
                                                                                     tmp_path, monkeypatch):
    toy_checkpoints = toy_with_inner_validation
    ckpt = tmp_path / "checkpoints"
    shutil.copytree(toy_checkpoints["checkpoints"], ckpt)
    set_card_field(checkpoint_path(TOY, "simplecnn", 1, ckpt), "decision_bias", {"one_view": [0.0, 9.0, 0.0]})
    read: list[str] = []
    load = ev.load_uint8_batch  # what the inner-validation sets are read with
    monkeypatch.setattr(ev, "load_uint8_batch", lambda root, paths, size, **kw: read.extend(paths) or load(
        root, paths, size, **kw))
    real_decide = db.decide

    def decide(probabilities, y, temperature=1.0):  # fold 0's TTA mode is made to win, whatever the toy model does
        d = real_decide(probabilities, y, temperature)
        calls.append({**d, "probabilities": probabilities})
        return {**d, "taken": len(calls) == 2}

    calls: list[dict] = []
    monkeypatch.setattr(db, "decide", decide)
    report = db.decision_bias_dataset(TOY, toy_checkpoints["data_root"], archs=["simplecnn"],
                                      splits_path=toy_checkpoints["manifest"], device="cpu", checkpoints_dir=ckpt,
                                      results_base=tmp_path)
    manifest = pd.read_csv(toy_checkpoints["manifest"])
    inner = set()
    for k in (0, 1):
        card = read_card(checkpoint_path(TOY, "simplecnn", k, ckpt))
        inner |= set(fold_parts(manifest, k, val_fraction=card["recipe"]["val_fraction"])[1]["path"])
    assert read and set(read) <= inner  # no test-fold image, no training image
    entry = report["archs"]["simplecnn"]
    assert entry["taken"] == {"one_view": [], "tta": [0]}
    assert read_card(checkpoint_path(TOY, "simplecnn", 0, ckpt))["decision_bias"] == {
        "tta": entry["folds"]["0"]["tta"]["bias"]}
    assert "decision_bias" not in read_card(checkpoint_path(TOY, "simplecnn", 1, ckpt))  # an old bias not taken: gone
    # fold 1's decision was made on the model's own output, not on the biased one its card carried
    assert len(calls) == 4  # fold 0 one view, fold 0 TTA, fold 1 one view, fold 1 TTA
    model, card = load_checkpoint(checkpoint_path(TOY, "simplecnn", 1, toy_checkpoints["checkpoints"]))
    val = fold_parts(manifest, 1, val_fraction=card["recipe"]["val_fraction"])[1]
    own = InferenceModel.from_card(model, card, "cpu")(load(toy_checkpoints["data_root"], list(val["path"]), 48))
    np.testing.assert_allclose(calls[2]["probabilities"], own.probabilities, atol=1e-6)
    saved = json.loads((tmp_path / "toy" / "decision_bias.json").read_text())
    assert saved["split_sha256"] == toy_checkpoints["sha"] and "strictly more" in saved["rule"]
    assert entry["folds"]["0"]["one_view"]["n_inner_val"] == len(
        fold_parts(manifest, 0, val_fraction=read_card(checkpoint_path(TOY, "simplecnn", 0, ckpt))["recipe"][
            "val_fraction"])[1])
