"""Grad-CAM++ from one backbone pass equals pytorch-grad-cam on the whole model (methods × models)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spermlib.inference.explain import explain_batch, gradcam_pp, gradcam_pp_full_model, gradcam_precision
from spermlib.models import ARCHS, build_model
from spermlib.runtime import bf16_available, precision_policy

BACKBONE = "tf_efficientnet_lite0"


def _model(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(arch, 3, BACKBONE).eval()


@pytest.mark.parametrize("arch", ARCHS)
def test_fast_gradcampp_matches_the_full_model_reference(arch):
    model = _model(arch)
    x = torch.randn(3, 3, 96, 96)
    classes = [0, 1, 2]
    fast = gradcam_pp(model, x, classes)
    ref = gradcam_pp_full_model(model, x, classes)
    assert fast.shape == ref.shape == (3, 96, 96)
    assert float(np.abs(fast - ref).max()) < 1e-3
    assert all(float(m.max()) > float(m.min()) for m in fast)  # not constant


@pytest.mark.skipif(not bf16_available(torch.device("cpu")), reason="this CPU has no native bf16")
@pytest.mark.parametrize("arch", ARCHS)
def test_a_bf16_backbone_pass_gives_the_fp32_maps_up_to_rounding(arch):
    """The app explains with the backbone under the prediction's bf16 policy and the head in fp32: the maps
    must stay those of the fp32 computation (same peak, nearly the same map), whatever arch."""
    model = _model(arch)
    policy = precision_policy(torch.device("cpu"))
    x = torch.randn(3, 3, 96, 96).contiguous(memory_format=torch.channels_last)
    fp32 = gradcam_pp(model, x, [0, 1, 2])
    bf16 = gradcam_pp(model, x, [0, 1, 2], policy)
    assert gradcam_precision(policy) == "backbone bf16-autocast+channels_last, head fp32"
    assert gradcam_precision(None) == "fp32"
    for a, b in zip(fp32, bf16):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.98
    cams, att = explain_batch(model, x, [0, 1, 2], policy)
    np.testing.assert_allclose(cams, bf16, atol=1e-6)
    assert (att is not None) == (arch == "effnet_cbam")


def test_a_map_leaves_the_model_in_its_mode_and_does_not_walk_an_eval_model(monkeypatch):
    from spermlib.inference.explain import gradcam_pp_from_features

    model = _model("effnet_cbam")
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, 3, 64, 64))
    expected = gradcam_pp_from_features(model, feats, [1], (64, 64))
    walks = []
    monkeypatch.setattr(type(model), "train", lambda self, mode=True: walks.append(mode) or self)
    again = gradcam_pp_from_features(model, feats, [1], (64, 64))
    assert walks == [] and np.array_equal(expected, again)  # eval model: no walk over its ~300 submodules
    monkeypatch.undo()
    model.train()
    assert np.allclose(gradcam_pp_from_features(model, feats, [1], (64, 64)), expected, atol=1e-6)
    assert model.training and all(m.training for m in model.modules())  # put back as it was given


HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def hooks_on(model: torch.nn.Module) -> dict[str, int]:
    """Hooks registered on any submodule of ``model``, by module name (empty when none)."""
    counts = {name: sum(len(getattr(m, d)) for d in HOOK_DICTS) for name, m in model.named_modules()}
    return {name: n for name, n in counts.items() if n}


@pytest.mark.parametrize("arch", ARCHS)
def test_no_hook_is_left_on_the_shared_model(arch):
    model = _model(arch)
    x = torch.randn(1, 3, 64, 64)
    assert hooks_on(model) == {}
    gradcam_pp(model, x, [0])
    explain_batch(model, x, [0])
    gradcam_pp_full_model(model, x, [0])
    assert hooks_on(model) == {}


def test_the_hook_check_catches_a_cam_that_keeps_its_hooks(monkeypatch):
    """With pytorch-grad-cam's release disabled, the reference path leaves hooks and ``hooks_on`` sees them;
    the fast path and the Explainer still leave none on the shared model (their hooks live on a per-call wrapper)."""
    from PIL import Image
    from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients

    from spermlib.inference.explain import Explainer
    from spermlib.inference.predict import Predictor
    from tests.model_fixtures import TOY

    monkeypatch.setattr(ActivationsAndGradients, "release", lambda self: None)
    model = _model("simplecnn")
    card = {"arch": "simplecnn", "backbone": "simplecnn", "classes": list(TOY.class_dirs), "input_size": 48,
            "mean": [0.5] * 3, "std": [0.5] * 3, "dataset": "toy", "fold": 0}
    predictor = Predictor(TOY, [model], [card])
    Explainer(predictor).explain(Image.new("RGB", (50, 40), (200, 30, 90)))
    gradcam_pp(model, torch.randn(1, 3, 48, 48), [1])
    assert hooks_on(model) == {}
    gradcam_pp_full_model(model, torch.randn(1, 3, 48, 48), [0])
    leaked = hooks_on(model)
    assert leaked and all(name.startswith("features.3") for name in leaked), leaked  # on cam_target_layer


def test_default_class_is_the_argmax():
    model = _model("simplecnn")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        top = model(x).argmax(1).tolist()
    assert np.allclose(gradcam_pp(model, x), gradcam_pp(model, x, top))


def test_cbam_map_and_features_from_one_pass():
    model = _model("effnet_cbam")
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        feats, gate = model.forward_features_and_attention(x)
        assert torch.allclose(feats, model.forward_features(x), atol=1e-5)
        assert torch.allclose(gate, model.spatial_attention(x))
    cams, att = explain_batch(model, x, [0, 1])
    assert att.shape == (2, 96, 96) and att.min() >= 0 and att.max() <= 1
    assert np.abs(cams - gradcam_pp_full_model(model, x, [0, 1])).max() < 1e-3
    assert explain_batch(_model("effnet"), x, [0, 1])[1] is None
