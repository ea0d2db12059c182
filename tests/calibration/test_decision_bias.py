"""The per-class decision bias: the NLL-optimal bias is recovered, the cross-fit never scores an image with a bias
fitted on it, the rule takes a bias only on a strict cross-fitted win, and a card's bias is what the core, evaluate,
``predict.tempered`` and the Predictor apply (each mode its own)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from scipy.special import log_softmax

from spermlib.calibration.decision_bias import apply_bias, card_bias, cross_fitted, decide, fit_bias
from spermlib.evaluation.evaluate import evaluate_dataset
from spermlib.inference.core import ForwardOutput, with_decision_bias
from spermlib.inference.predict import Predictor, tempered
from spermlib.store.cards import checkpoint_path, set_card_field
from tests.model_fixtures import TOY


def _sample(n: int, true_bias: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logp = log_softmax(rng.normal(0, 2, (n, len(true_bias))), axis=1)
    p = np.exp(log_softmax(logp + true_bias, axis=1))
    y = np.array([rng.choice(len(true_bias), p=row) for row in p])
    return logp, y


def test_fit_bias_recovers_the_bias_that_generated_the_labels():
    true_bias = np.array([0.0, 1.0, -0.7])
    logp, y = _sample(20000, true_bias)
    assert fit_bias(logp, y) == pytest.approx(true_bias, abs=0.08)


def test_cross_fit_differs_from_the_in_sample_fit_and_keeps_the_unbiased_rows_without_enough_images():
    logp, y = _sample(60, np.array([0.0, 1.5, -1.0]), seed=1)
    in_sample = np.exp(log_softmax(logp + fit_bias(logp, y), axis=1))
    held_out = cross_fitted(logp, y)
    assert held_out.sum(1) == pytest.approx(np.ones(len(y)))
    assert not np.allclose(held_out, in_sample)
    y_one = y.copy()
    y_one[:] = 0
    y_one[0] = 1  # class 1 has one image, class 2 none
    assert cross_fitted(logp, y_one) == pytest.approx(np.exp(logp))


def test_decide_takes_a_bias_only_when_its_cross_fit_gets_strictly_more_images_right():
    rng = np.random.default_rng(3)
    z = rng.normal(0, 1.5, (400, 3))
    shifted = np.array([0.0, 2.0, -1.0])  # the labels' boundaries sit away from the model's
    y = np.array([rng.choice(3, p=row) for row in np.exp(log_softmax(z + shifted, axis=1))])
    d = decide(np.exp(log_softmax(z, axis=1)), y, temperature=0.5)
    assert d["taken"] and d["inner_val_right_cross_fitted"] > d["inner_val_right_without"]
    # stored on the raw-logit scale: temperature × the bias fitted on log p / T
    logp = log_softmax(z, axis=1) / 0.5
    np.testing.assert_allclose(d["bias"], 0.5 * fit_bias(logp, y), atol=1e-6)
    perfect = decide(np.exp(log_softmax(3 * np.eye(3)[y], axis=1)), y)  # every image right: nothing to win
    assert not perfect["taken"] and perfect["inner_val_right_without"] == len(y)
    assert card_bias({"one_view": perfect, "tta": d}) == {"tta": d["bias"]}
    assert card_bias({"one_view": perfect}) is None


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_the_core_applies_each_modes_bias_and_predict_tempers_it_as_fitted(temperature):
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, (5, 3)).astype(np.float32)
    views = [rng.normal(0, 2, (5, 3)).astype(np.float32) for _ in range(3)]
    p_views = [np.exp(log_softmax(v, axis=1)).astype(np.float32) for v in views]
    b = np.array([0.0, 1.5, -2.0])  # what was fitted on log p / T; the card stores T · b
    card = {"one_view": list(temperature * b), "tta": list(-temperature * b)}
    one = ForwardOutput(np.exp(log_softmax(z, axis=1)).astype(np.float32), z, np.zeros((5, 2), np.float32), "fp32",
                        "cpu")
    biased = with_decision_bias(one, card)
    np.testing.assert_array_equal(biased.logits, z)  # the model's own logits (out-of-domain detectors read them)
    np.testing.assert_allclose(tempered(biased, temperature), np.exp(log_softmax(z / temperature + b, axis=1)),
                               atol=1e-5)
    first = ForwardOutput(p_views[0], views[0], np.zeros((5, 2), np.float32), "fp32", "cpu")
    mean_p = np.mean(p_views, axis=0)
    tta = ForwardOutput(mean_p, np.mean(views, axis=0), np.zeros((5, 2), np.float32), "fp32", "cpu", first=first)
    biased = with_decision_bias(tta, card)
    np.testing.assert_allclose(tempered(biased, temperature),
                               np.exp(log_softmax(np.log(mean_p) / temperature - b, axis=1)), atol=1e-5)
    np.testing.assert_allclose(biased.first.probabilities, apply_bias(p_views[0], card["one_view"]), atol=1e-6)
    assert with_decision_bias(tta, {"one_view": card["one_view"]}).probabilities is mean_p  # the TTA mean as it was
    assert with_decision_bias(one, None) is one


def test_a_cards_bias_moves_the_class_that_evaluate_and_predict_report(toy_checkpoints, tmp_path):
    src = toy_checkpoints["checkpoints"]
    ckpt = tmp_path / "checkpoints"
    shutil.copytree(src, ckpt)
    empty = TOY.class_dirs.index("empty")
    bias = [0.0, 0.0, 0.0]
    bias[empty] = 20.0  # the most a card may carry (store.card_schema.MAX_DECISION_BIAS)
    set_card_field(checkpoint_path(TOY, "simplecnn", 0, ckpt), "decision_bias", {"one_view": bias})
    kw = dict(archs=["simplecnn"], splits_path=toy_checkpoints["manifest"], device="cpu", results_base=tmp_path)
    evaluate_dataset(TOY, toy_checkpoints["data_root"], checkpoints_dir=src, **kw)
    pd.read_csv(tmp_path / "toy" / "oof_simplecnn.csv").to_csv(tmp_path / "before.csv", index=False)
    evaluate_dataset(TOY, toy_checkpoints["data_root"], checkpoints_dir=ckpt, **kw)
    oof = pd.read_csv(tmp_path / "toy" / "oof_simplecnn.csv")
    old = pd.read_csv(tmp_path / "before.csv")
    assert (oof.loc[oof["fold"] == 0, "pred"] == "empty").all()  # fold 0's one-view class: the bias decides
    assert (old.loc[old["fold"] == 0, "pred"] != "empty").any()
    assert oof.loc[oof["fold"] == 1, "pred"].equals(old.loc[old["fold"] == 1, "pred"])  # fold 1 has no bias
    evaluate_dataset(TOY, toy_checkpoints["data_root"], checkpoints_dir=ckpt, tta=True, **kw)
    tta = pd.read_csv(tmp_path / "toy" / "oof_simplecnn+tta.csv")
    assert (tta.loc[tta["fold"] == 0, "pred"] != "empty").any()  # the card has no bias for the TTA mode
    manifest = pd.read_csv(toy_checkpoints["manifest"])
    files = [toy_checkpoints["data_root"] / p for p in manifest.loc[manifest["fold"] == 0, "path"]]
    got = Predictor.from_checkpoints(TOY, arch="simplecnn", folds=[0], checkpoints_dir=ckpt).predict_files(files)
    assert {r.label for r in got} == {"empty"}
