"""Model registry: one contract for all architectures (timm style).

Every model has ``num_classes``, ``num_features``, ``forward_features(x)`` (final feature map),
``forward_head(x, pre_logits=False)`` (pooled pre-logit features with ``pre_logits=True``),
``get_classifier()`` (the final linear layer: applied to the pre-logits it gives the logits),
``cam_target_layer`` (the layer Grad-CAM++ explains) and ``backbone_parameters()`` (what the
warm-up stage freezes; empty for SimpleCNN).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from spermlib.archs import ARCHS, DEFAULT_ARCH, check_arch

from .efficientnet import EfficientNetClassifier
from .simplecnn import SimpleCNN

SIMPLECNN_NORM = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


@dataclass(frozen=True)
class ModelInfo:
    arch: str
    backbone: str  # timm name, or "simplecnn"
    pretrained_source: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def build_model(arch: str, num_classes: int, backbone: str | None = None) -> nn.Module:
    """An untrained model of ``arch``; ``backbone`` is the timm name for the EfficientNet archs."""
    check_arch(arch)
    if arch == "simplecnn":
        return SimpleCNN(num_classes)
    if not backbone:
        raise ValueError(f"{arch} needs a backbone name")
    return EfficientNetClassifier(backbone, num_classes, cbam=arch == "effnet_cbam")


def create_model(
    arch: str,
    num_classes: int,
    backbone: str = "auto",
    pretrained: str = "auto",
    weights_path: str | Path | None = None,
) -> tuple[nn.Module, ModelInfo]:
    """A model ready to train, with ImageNet weights resolved as in :mod:`spermlib.models.weights`."""
    check_arch(arch)
    if arch == "simplecnn":
        mean, std = SIMPLECNN_NORM
        return SimpleCNN(num_classes), ModelInfo(arch, "simplecnn", "none (trained from scratch)", mean, std)
    from spermlib.models.weights import resolve_weights  # imported here: timm/hub probing is only needed to train

    weights = resolve_weights(backbone, pretrained, weights_path)
    model = EfficientNetClassifier(weights.backbone, num_classes, cbam=arch == "effnet_cbam")
    if weights.state_dict is not None:
        model.load_backbone_state(weights.state_dict)
    return model, ModelInfo(arch, weights.backbone, weights.source, tuple(weights.mean), tuple(weights.std))


__all__ = ["ARCHS", "DEFAULT_ARCH", "ModelInfo", "build_model", "create_model", "check_arch",
           "EfficientNetClassifier", "SimpleCNN"]
