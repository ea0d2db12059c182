"""The inference core: one pass gives model(x)'s logits, TTA is the 8-view mean, every path agrees with it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from spermlib.data.preprocess import load_uint8_batch
from spermlib.evaluation.embedding import embed
from spermlib.evaluation.evaluate import evaluate_dataset
from spermlib.evaluation.faithfulness import score_arch
from spermlib.inference.core import InferenceModel, Preprocessing, forward, predict_proba, tta_views
from spermlib.inference.explain import gradcam_precision
from spermlib.inference.predict import Predictor
from spermlib.models import ARCHS, build_model
from spermlib.runtime import FP32, Precision, bf16_available, precision_policy
from spermlib.store.checkpoints import checkpoint_path, load_checkpoint
from tests.model_fixtures import TOY

CPU = torch.device("cpu")
POLICIES = [FP32, Precision(bf16=False, channels_last=True)] + (
    [Precision(bf16=True, channels_last=True)] if bf16_available(CPU) else [])


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
@pytest.mark.parametrize("arch", ARCHS)
def test_one_pass_gives_exactly_the_models_logits(arch, policy):
    torch.manual_seed(0)
    model = build_model(arch, 3, "tf_efficientnet_lite0").eval()
    prep = Preprocessing(64, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    x = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    fm = InferenceModel(model, prep, CPU, policy)
    out = fm(x)
    run = fm.model  # the model with its batch norms folded (models.fusion), which inference runs
    assert fm.trained is model and fm.folded_bn > 0 and run is not model
    with torch.inference_mode(), policy.autocast(CPU):
        xin = prep.model_input(x, CPU, policy)
        logits = run(xin).float()
        pre = run.forward_head(run.forward_features(xin), pre_logits=True).float()
        unfolded = model(xin).float()
    assert torch.equal(torch.from_numpy(out.logits), logits)  # bit-exact: the same operations as model(x)
    assert torch.equal(torch.from_numpy(out.features), pre) and out.features.shape == (3, model.num_features)
    np.testing.assert_array_equal(out.probabilities, torch.softmax(logits, 1).numpy())
    assert out.precision == policy.name
    # and the trained (unfolded) model's logits up to rounding: bf16 rounds the folded weights differently
    tol = 5e-2 if policy.bf16 else 1e-4
    np.testing.assert_allclose(out.logits, unfolded.numpy(), atol=tol * max(1.0, float(unfolded.abs().max())))


def test_a_model_left_in_training_mode_is_put_in_eval_mode_and_an_eval_model_is_not_walked_again(monkeypatch):
    """Dropout and batch-norm statistics must never act at inference, and ``eval()`` (a walk over every
    submodule) must not run on every call."""
    torch.manual_seed(0)
    model = build_model("effnet_cbam", 3, "tf_efficientnet_lite0").train()
    prep = Preprocessing(64, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    first = forward(model, x, prep, CPU, FP32)
    assert not any(m.training for m in model.modules())
    calls = []
    monkeypatch.setattr(type(model), "eval", lambda self: calls.append(self) or self)
    again = forward(model, x, prep, CPU, FP32)
    assert calls == [] and np.array_equal(first.logits, again.logits)


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
@pytest.mark.parametrize("arch", ARCHS)
def test_the_pass_with_early_map_statistics_changes_nothing_else(arch, policy):
    """``stats=True`` runs ``forward_features_and_taps`` instead of ``forward_features``: the same logits bit for
    bit, plus each early map's per-channel mean and std (what out-of-domain detection reads)."""
    torch.manual_seed(0)
    model = build_model(arch, 3, "tf_efficientnet_lite0").eval()
    prep = Preprocessing(64, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    x = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    fm = InferenceModel(model, prep, CPU, policy)
    plain, tapped = fm(x), fm(x, stats=True)
    assert plain.stats is None and plain.stats_sizes == ()
    np.testing.assert_array_equal(tapped.logits, plain.logits)
    np.testing.assert_array_equal(tapped.features, plain.features)
    with torch.inference_mode(), policy.autocast(CPU):
        maps = fm.model.forward_features_and_taps(prep.model_input(x, CPU, policy))[1]
    assert len(maps) == model.DOMAIN_TAPS and tapped.stats_sizes == tuple(2 * m.shape[1] for m in maps)
    first = maps[0].float()
    np.testing.assert_allclose(tapped.stats[:, : first.shape[1]], first.mean((2, 3)).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tapped.stats[:, first.shape[1] : 2 * first.shape[1]],
                               first.std((2, 3), correction=0).numpy(), rtol=1e-5, atol=1e-6)
    assert tapped.stats.shape == (3, sum(tapped.stats_sizes)) and np.isfinite(tapped.stats).all()
    assert fm(x[:0], stats=True).stats.shape[0] == 0


def test_tta_is_the_mean_over_the_eight_views_and_differs_from_one_view(toy_checkpoints):
    model, card = load_checkpoint(checkpoint_path(TOY, "simplecnn", 0, toy_checkpoints["checkpoints"]))
    fm = InferenceModel.from_card(model, card, CPU)
    x = load_uint8_batch(toy_checkpoints["data_root"], list(pd.read_csv(toy_checkpoints["manifest"])["path"]), 48)
    views = tta_views(x)
    assert len({v[0].numpy().tobytes() for v in views}) == 8  # the 8 distinct flips/rotations of an image
    tta = fm(x, tta=True)
    per_view = [fm(v.contiguous()) for v in views]
    np.testing.assert_allclose(tta.probabilities, np.mean([o.probabilities for o in per_view], axis=0), atol=1e-6)
    np.testing.assert_allclose(tta.features, np.mean([o.features for o in per_view], axis=0), atol=1e-5)
    assert np.abs(tta.probabilities - per_view[0].probabilities).max() > 1e-3  # TTA is not the plain pass
    # the unaugmented view's own output rides along (out-of-domain detectors were fitted on single views)
    plain = fm(x, stats=True)
    with_stats = fm(x, tta=True, stats=True)
    # (the views are stacked into one pass, so "equal" is up to the kernels' batch-size rounding)
    np.testing.assert_allclose(with_stats.first.probabilities, plain.probabilities, atol=1e-4)
    np.testing.assert_allclose(with_stats.first.features, plain.features, atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(with_stats.stats, plain.stats, atol=1e-3, rtol=1e-3)
    np.testing.assert_array_equal(with_stats.probabilities, tta.probabilities)
    np.testing.assert_allclose(fm(x, tta=True, batch_size=8).probabilities, tta.probabilities, atol=1e-4)
    assert plain.first is None and tta.first is not None


def test_batch_size_does_not_change_results_in_fp32(toy_checkpoints):
    model, card = load_checkpoint(checkpoint_path(TOY, "simplecnn", 1, toy_checkpoints["checkpoints"]))
    x = torch.randint(0, 256, (10, 3, 48, 48), dtype=torch.uint8)
    fm = InferenceModel.from_card(model, card, CPU, FP32)
    np.testing.assert_allclose(fm(x, batch_size=3).probabilities, fm(x, batch_size=128).probabilities, atol=1e-6)


def test_training_helper_is_the_core(toy_checkpoints):
    """``predict_proba`` (training's inner validation) gives the core's probabilities."""
    model, card = load_checkpoint(checkpoint_path(TOY, "simplecnn", 1, toy_checkpoints["checkpoints"]))
    x = torch.randint(0, 256, (5, 3, 48, 48), dtype=torch.uint8)
    policy = precision_policy(CPU)
    got = predict_proba(model, x, card["mean"], card["std"], CPU, policy.bf16, policy.channels_last)
    np.testing.assert_array_equal(got, forward(model, x, Preprocessing.from_card(card), CPU, policy).probabilities)
    assert predict_proba(model, x[:0], card["mean"], card["std"], CPU, False, False).shape == (0, 0)


def test_every_inference_path_gives_the_same_probabilities(toy_checkpoints, tmp_path):
    """predict, evaluate's OOF rows, faithfulness's predicted class, embedding's softmax and the bench's batch
    path agree on the fold-1 test images scored by the fold-1 model (same core, same precision)."""
    root, ck = toy_checkpoints["data_root"], toy_checkpoints["checkpoints"]
    manifest = pd.read_csv(toy_checkpoints["manifest"])
    paths = sorted(manifest.loc[manifest["fold"] == 1, "path"])
    one = Predictor.from_checkpoints(TOY, "simplecnn", folds=[1], checkpoints_dir=ck)
    cols = [f"prob_{c}" for c in TOY.class_dirs]
    predicted = pd.DataFrame([r.probabilities for r in one.predict_files([root / p for p in paths])],
                             index=paths)[list(TOY.class_dirs)].to_numpy()

    evaluate_dataset(TOY, root, archs=["simplecnn"], splits_path=toy_checkpoints["manifest"], checkpoints_dir=ck,
                     results_base=tmp_path)
    oof = pd.read_csv(tmp_path / "toy" / "oof_simplecnn.csv").set_index("path").loc[paths, cols].to_numpy()
    embedded = embed(one, 1, root, paths, batch_size=4)[1]
    bench = one.fold_models[0](load_uint8_batch(root, paths, one.input_size), batch_size=64).probabilities
    for other in (oof, embedded, bench):
        np.testing.assert_allclose(other, predicted, atol=1e-4)
    assert 0.05 < predicted.max(1).min() < 0.9999  # not saturated: the comparison can tell models apart

    faith, run = score_arch(TOY, root, manifest, toy_checkpoints["sha"], "simplecnn", ck, per_class=2)
    faith = faith[faith["fold"] == 1].set_index("path")
    expected = pd.Series(np.array(TOY.class_dirs)[predicted.argmax(1)], index=paths)
    assert faith["pred"].to_dict() == expected[faith.index].to_dict()
    assert run["prediction_precision"] == one.precision.name
    assert run["gradcam_precision"] == gradcam_precision(one.precision)


def test_recorded_precisions_are_recomputed_in_bf16_even_where_it_must_be_emulated():
    from spermlib.runtime import reproducing

    bf16 = reproducing("bf16-autocast+channels_last", CPU)
    assert (bf16.bf16, bf16.channels_last, bf16.emulated, bf16.name) == (
        True, True, not bf16_available(CPU), "bf16-autocast+channels_last")
    assert reproducing("fp32", CPU) == Precision(bf16=False, channels_last=False)
    # the emulated context really computes in bf16 (the policy's own 'bf16' request would fall back to fp32 here)
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    with bf16.autocast(CPU):
        assert (a @ b).dtype == torch.bfloat16
    with precision_policy(CPU, "bf16").autocast(CPU):
        assert (a @ b).dtype == (torch.bfloat16 if bf16_available(CPU) else torch.float32)
