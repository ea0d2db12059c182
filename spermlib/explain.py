"""Visual explanations: Grad-CAM++ (pytorch-grad-cam), CBAM spatial attention, overlays, faithfulness.

Thread-safety: a CAM object registers hooks on a model's target layer, and *any* forward pass
through that model while the hooks are registered (another user's prediction, say) would be
recorded by them. So every function here builds its CAM inside ``with`` (hooks released on exit)
and callers that share a model between threads hold that model's lock (see
``predict.Predictor.lock``) around the call.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from pytorch_grad_cam import GradCAMPlusPlus
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget
from torch import nn


def gradcam_pp(model: nn.Module, x: torch.Tensor, class_idx: Sequence[int] | None = None,
               target_layer: nn.Module | None = None) -> np.ndarray:
    """Grad-CAM++ maps ``(B, H, W)`` in [0, 1] at input resolution, for ``class_idx`` (default: argmax).

    ``x`` is the normalised input batch. Runs in float32 (no autocast): gradients in bf16 are too
    coarse for the second-order Grad-CAM++ weights.
    """
    layer = target_layer if target_layer is not None else model.cam_target_layer
    targets = None if class_idx is None else [ClassifierOutputTarget(int(c)) for c in class_idx]
    was_training = model.training
    try:
        with torch.enable_grad(), GradCAMPlusPlus(model=model, target_layers=[layer]) as cam:
            maps = cam(input_tensor=x.float(), targets=targets)
    finally:
        model.train(was_training)
    return np.asarray(maps, dtype=np.float32)


@torch.no_grad()
def cbam_attention(model: nn.Module, x: torch.Tensor, size: int | None = None) -> np.ndarray:
    """CBAM spatial-attention maps ``(B, H, W)`` in [0, 1] (not re-normalised: 0.5 means neutral)."""
    att = model.spatial_attention(x.float())  # (B, 1, h, w)
    if size:
        att = torch.nn.functional.interpolate(att, size=(size, size), mode="bilinear", align_corners=False)
    return att[:, 0].cpu().numpy().astype(np.float32)


def overlay(rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.5, normalise: bool = False) -> np.ndarray:
    """Heat map ``heat`` (any size, values in [0,1]) over ``rgb`` (H×W×3 uint8) → uint8 RGB.

    ``alpha`` is the heat map's opacity (0 = only the image, 1 = only the map).
    """
    h, w = rgb.shape[:2]
    m = cv2.resize(np.asarray(heat, dtype=np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    if normalise:
        lo, hi = float(m.min()), float(m.max())
        m = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
    m = np.clip(m, 0, 1)
    return show_cam_on_image(rgb.astype(np.float32) / 255.0, m, use_rgb=True, image_weight=1.0 - float(alpha))


def energy_inside(cam: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's total mass that falls inside a boolean ``mask`` (same shape)."""
    total = float(cam.sum())
    return float(cam[mask].sum() / total) if total > 0 else 0.0


def faithfulness_scores(model: nn.Module, x: torch.Tensor, cams: np.ndarray, class_idx: Sequence[int],
                        percentiles: Sequence[int] = (20, 40, 60, 80)) -> dict[str, np.ndarray]:
    """Per-image faithfulness of ``cams`` with pytorch-grad-cam's metrics.

    * ``road_combined``: ROAD (remove-and-debias) — mean over percentiles of (confidence drop when
      the *least* relevant pixels are imputed) minus (drop when the *most* relevant are imputed),
      halved. Higher = more faithful; ≈ 0 for a random map.
    * ``cam_mult_confidence_change``: change in softmax confidence when the image is multiplied by
      its map (keeping only what the map highlights). Higher = the highlighted region suffices.
    """
    from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
    from pytorch_grad_cam.metrics.road import ROADCombined

    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in class_idx]
    model.eval()
    with torch.no_grad():
        road = ROADCombined(percentiles=list(percentiles))(x.float(), cams, targets, model)
        mult = CamMultImageConfidenceChange()(x.float(), cams, targets, model)
    return {"road_combined": np.asarray(road, dtype=np.float64).reshape(-1),
            "cam_mult_confidence_change": np.asarray(mult, dtype=np.float64).reshape(-1)}
