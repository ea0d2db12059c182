"""Visual explanations: Grad-CAM++ (pytorch-grad-cam), CBAM spatial attention, overlays, faithfulness.

:class:`Explainer` sits on top of a :class:`~spermlib.inference.predict.Predictor`: it explains the
class the inference core predicted (or one the caller names) with the fold models the caller names,
reusing the prediction's resized input. The backbone pass runs under the prediction's precision (bf16
autocast where the CPU has it: forward only, no gradient); Grad-CAM++ itself differentiates the head in
float32 (its second-order weights need fp32 gradients).

Thread-safety: a CAM object registers hooks on its target layer, and *any* forward pass through
that layer while the hooks are registered would be recorded by them. The fast path hooks only a
wrapper module built per call (``_HeadOnFeatures``), never the shared model; the reference path
(``gradcam_pp_full_model``) hooks the model itself. Both build their CAM inside ``with`` (hooks
released on exit), and callers that share a model between threads still hold its lock (see
``predict.Predictor.lock``).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from pytorch_grad_cam import GradCAMPlusPlus
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget
from torch import nn

from spermlib.fileio import OutputError, atomic_path, describe_os_error
from spermlib.inference.core import ensure_eval
from spermlib.inference.predict import BATCH_SIZE, Prediction, Predictor
from spermlib.runtime import Precision


class _HeadOnFeatures(nn.Module):
    """``model.forward_head`` as a module whose input is the final feature map.

    Every model here follows one contract: its Grad-CAM target is the output of
    ``forward_features`` (SimpleCNN's last block, EfficientNet's ``bn2``, the CBAM output). So the
    gradients Grad-CAM++ needs (class score w.r.t. that map) flow through the head alone, and the
    backbone runs once, forward only, with no autograd graph: about a third of the cost of a
    backward pass through the whole network. The hooks live on this wrapper's own ``features``
    layer, created per call, so the shared model never carries a hook.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.features = nn.Identity()

    def train(self, mode: bool = True) -> _HeadOnFeatures:
        """Sets this wrapper's own flag only. pytorch-grad-cam calls ``eval()`` on the module it is given, and
        ``nn.Module.train`` would walk every submodule of the shared model (~300 for Lite0 + CBAM, ~1 ms per
        map on 2 cores) although :func:`gradcam_pp_from_features` has already put that model in eval mode."""
        self.training = mode
        self.features.train(mode)
        return self

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.features(feats))


def _resize_normalised(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Per-map bilinear resize to ``size`` (H, W), then min-max to [0, 1] (pytorch-grad-cam's scaling)."""
    out = []
    for m in maps:
        m = cv2.resize(np.asarray(m, dtype=np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        m = m - m.min()
        out.append(m / (1e-7 + m.max()))
    return np.stack(out).astype(np.float32)


def _at_size(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """One H×W map in [0, 1] at ``size`` (bilinear; clipped back to [0, 1]); as is when it already is."""
    if heat.shape == size:
        return heat
    return np.clip(cv2.resize(heat, (size[1], size[0]), interpolation=cv2.INTER_LINEAR), 0, 1).astype(np.float32)


def gradcam_pp_from_features(model: nn.Module, feats: torch.Tensor, class_idx: Sequence[int],
                             size: tuple[int, int]) -> np.ndarray:
    """Grad-CAM++ maps ``(B, *size)`` in [0, 1] from final feature maps ``feats`` (pytorch-grad-cam)."""
    head = _HeadOnFeatures(model)
    was_training = model.training
    ensure_eval(model)  # the wrapper's eval() no longer reaches the model (see _HeadOnFeatures.train)
    feats = feats.detach().float().contiguous().requires_grad_(True)
    targets = [ClassifierOutputTarget(int(c)) for c in class_idx]
    try:
        with torch.enable_grad(), GradCAMPlusPlus(model=head, target_layers=[head.features]) as cam:
            maps = cam(input_tensor=feats, targets=targets)
    finally:
        if was_training:
            model.train()
    return _resize_normalised(maps, size)


def _backbone_pass(model: nn.Module, x: torch.Tensor, precision: Precision | None,
                   with_attention: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The final feature map (float32) and, with ``with_attention``, the CBAM spatial gate, without autograd.

    ``precision`` is the prediction's policy (bf16 autocast on CPUs with native bf16): the backbone runs
    forward only, so it may run as fast as the prediction did; Grad-CAM++ then differentiates the head alone
    in float32 on these maps. ``None`` runs the backbone in float32 too.
    """
    with torch.no_grad(), (precision.autocast(x.device) if precision is not None else nullcontext()):
        xin = x if precision is not None else x.float()
        if with_attention:
            feats, gate = model.forward_features_and_attention(xin)
        else:
            feats, gate = model.forward_features(xin), None
    return feats.float(), None if gate is None else gate.float()


def gradcam_precision(precision: Precision | None) -> str:
    """How :func:`gradcam_pp` / :func:`explain_batch` compute under ``precision``, for results files."""
    if precision is None or not precision.bf16:
        return "fp32"
    return f"backbone {precision.name}, head fp32"


def gradcam_pp(model: nn.Module, x: torch.Tensor, class_idx: Sequence[int] | None = None,
               precision: Precision | None = None) -> np.ndarray:
    """Grad-CAM++ maps ``(B, H, W)`` in [0, 1] at input resolution, for ``class_idx`` (default: argmax).

    ``x`` is the normalised input batch. The head runs in float32 (no autocast): gradients in bf16 are too
    coarse for the second-order Grad-CAM++ weights; the backbone runs under ``precision`` (float32 when
    ``None``). In float32, the same maps as pytorch-grad-cam on the whole model with
    ``model.cam_target_layer`` (tested), from one backbone forward instead of forward + backward.
    """
    ensure_eval(model)
    feats, _ = _backbone_pass(model, x, precision, with_attention=False)
    if class_idx is None:
        with torch.no_grad():
            class_idx = model.forward_head(feats).argmax(1).tolist()
    return gradcam_pp_from_features(model, feats, class_idx, tuple(x.shape[-2:]))


def gradcam_pp_full_model(model: nn.Module, x: torch.Tensor, class_idx: Sequence[int]) -> np.ndarray:
    """Reference: pytorch-grad-cam's GradCAMPlusPlus on the whole model, hooked on ``cam_target_layer``."""
    was_training = model.training
    targets = [ClassifierOutputTarget(int(c)) for c in class_idx]
    try:
        with torch.enable_grad(), GradCAMPlusPlus(model=model, target_layers=[model.cam_target_layer]) as cam:
            maps = cam(input_tensor=x.float(), targets=targets)
    finally:
        model.train(was_training)
    return np.asarray(maps, dtype=np.float32)


def explain_batch(model: nn.Module, x: torch.Tensor, class_idx: Sequence[int],
                  precision: Precision | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Grad-CAM++ and (for CBAM models) the spatial-attention map, from one backbone forward pass under
    ``precision`` (see :func:`gradcam_pp`)."""
    ensure_eval(model)
    size = tuple(x.shape[-2:])
    feats, gate = _backbone_pass(model, x, precision, with_attention=getattr(model, "has_cbam", False))
    att = None
    if gate is not None:
        att = torch.nn.functional.interpolate(gate, size=size, mode="bilinear", align_corners=False)
        att = att[:, 0].cpu().numpy().astype(np.float32)
    return gradcam_pp_from_features(model, feats, class_idx, size), att


@dataclass
class Explanation:
    rgb: np.ndarray  # the model input (resized image), H×W×3 uint8
    class_idx: int
    gradcam: np.ndarray  # H×W in [0,1], mean over the fold models used
    cbam: np.ndarray | None  # H×W CBAM spatial gate (effnet_cbam only)


class Explainer:
    """Grad-CAM++ and CBAM attention of a predictor's fold models. Holds ``predictor.lock`` while it runs."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor

    def explain(self, image: Image.Image | np.ndarray, class_idx: int | None = None,
                folds: Sequence[int] | None = None) -> Explanation:
        """Maps (mean over ``folds``, default all loaded) for ``class_idx`` (default: those folds' prediction).

        ``image`` is a decoded RGB image or a prediction's ``model_input`` (then nothing is resized
        again). A fold that is not loaded raises ``CheckpointError``: a map must come from the model named.
        """
        p = self.predictor
        use = p.model_indices(folds)
        u8 = p.preprocess([image])
        if class_idx is None:
            class_idx = int(p.fold_probabilities(u8, folds).mean(0)[0].argmax())  # the class predict reports
        size = tuple(u8.shape[-2:])
        with p.lock:  # each fold at its own input size; a smaller fold's maps are brought to the ensemble's
            maps = [explain_batch(p.models[i], p.model_input(u8, p.folds[i]), [class_idx], p.precision) for i in use]
        cams = [_at_size(cam[0], size) for cam, _ in maps]
        atts = [_at_size(att[0], size) for _, att in maps if att is not None]
        return Explanation(rgb=u8[0].permute(1, 2, 0).numpy(), class_idx=class_idx, gradcam=np.mean(cams, axis=0),
                           cbam=np.mean(atts, axis=0) if atts else None)

    def predict_files(self, paths: Sequence[str | Path], cam_dir: str | Path) -> list[Prediction]:
        """Classify files and write a Grad-CAM++ overlay of each predicted class under ``cam_dir``
        (:class:`OverlayWriter`: one file per input, named by :func:`cam_file_names`)."""
        return list(OverlayWriter(self, cam_dir).iter_files(paths))


CAM_SUFFIX = "_gradcampp.png"


def cam_file_names(paths: Sequence[str | Path]) -> list[Path]:
    """Each input's overlay file, relative to the overlays' folder: the input's path relative to the folder
    common to all inputs, its extension replaced by ``_gradcampp.png`` (``02_Tapered/image_001.BMP`` →
    ``02_Tapered/image_001_gradcampp.png``), so that the ``image_001.BMP`` of four class folders gives four
    files. Inputs that would still share a name (``a.png`` and ``a.bmp``) keep their extension in it; the
    same file given twice shares one."""
    absolute = [Path(os.path.abspath(p)) for p in paths]
    if not absolute:
        return []
    root = Path(os.path.commonpath([str(p.parent) for p in absolute]))
    relative = [p.relative_to(root) for p in absolute]
    names = [r.with_name(f"{r.stem}{CAM_SUFFIX}") for r in relative]
    sources: dict[Path, set[Path]] = defaultdict(set)
    for name, rel in zip(names, relative):
        sources[name].add(rel)
    names = [name if len(sources[name]) == 1 else rel.with_name(f"{rel.name}{CAM_SUFFIX}")
             for name, rel in zip(names, relative)]
    first_source: dict[Path, Path] = {}
    for i, (name, rel) in enumerate(zip(names, relative)):  # a last resort for names like `a.png` + `a.png.jpg`
        if first_source.setdefault(name, rel) != rel:
            names[i] = rel.with_name(f"{rel.name}.{i}{CAM_SUFFIX}")
    return names


class OverlayWriter:
    """Classifies files batch by batch and writes each prediction's Grad-CAM++ overlay (atomically, one file per
    input: :func:`cam_file_names`) under ``cam_dir``.

    A map that cannot be written leaves its prediction whole, with ``cam_error``; after the first such failure
    (a full disk, a folder that went away) no more maps are computed, every later prediction says so, and
    ``failure`` keeps that first error (naming its file) for the caller to report once.
    """

    def __init__(self, explainer: Explainer, cam_dir: str | Path):
        self.explainer = explainer
        self.cam_dir = Path(cam_dir)
        self.failure: OutputError | None = None
        self.not_written = 0

    def iter_files(self, paths: Sequence[str | Path], batch_size: int = BATCH_SIZE) -> Iterator[Prediction]:
        """The predictions of ``paths`` in order, each yielded once its overlay is written (or failed)."""
        targets = [self.cam_dir / name for name in cam_file_names(paths)]
        batches = self.explainer.predictor.iter_sources([str(p) for p in paths], batch_size=batch_size)
        for pred, target in zip((pred for batch in batches for pred in batch), targets):
            if pred.error is None:
                self.write(pred, target)
            pred.model_input = None  # written out: no need to keep every input of a long file list
            yield pred

    def write(self, pred: Prediction, target: Path) -> None:
        if self.failure is not None:
            self.not_written += 1
            pred.cam_error = f"not written: an earlier overlay failed ({self.failure})"
            return
        try:
            exp = self.explainer.explain(pred.model_input, class_idx=self.explainer.predictor.classes.index(pred.label))
            write_png(target, overlay(exp.rgb, exp.gradcam, alpha=0.5))
        except OutputError as err:
            self.failure = err
            self.not_written += 1
            pred.cam_error = str(err)
            return
        pred.cam_path = str(target)


def write_png(path: Path, rgb: np.ndarray) -> Path:
    """An H×W×3 uint8 image as a PNG at ``path`` (atomically; its folder made first)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"could not write {path}: {describe_os_error(err)}") from None
    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")  # the format by name: the temporary file has no .png
    return path


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
    ensure_eval(model)
    with torch.no_grad():
        road = ROADCombined(percentiles=list(percentiles))(x.float(), cams, targets, model)
        mult = CamMultImageConfidenceChange()(x.float(), cams, targets, model)
    return {"road_combined": np.asarray(road, dtype=np.float64).reshape(-1),
            "cam_mult_confidence_change": np.asarray(mult, dtype=np.float64).reshape(-1)}
