"""Inference on new images: fold ensembles, batches, per-file errors. Used by the CLI and the app.

The default model for a dataset is the 5-fold ensemble of one arch: each fold model saw a different
80 % of the data, and averaging their softmax outputs is the usual way to use CV models on new data.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from spermlib.data.datasets import DatasetSpec
from spermlib.data.imageio import ImageError, ImageSource, load_rgb
from spermlib.data.preprocess import normalize, to_uint8_tensor
from spermlib.inference.explain import explain_batch, overlay
from spermlib.runtime import autocast, bf16_available, pick_device
from spermlib.store.checkpoints import CheckpointError, available_folds, checkpoint_path, load_checkpoint
from spermlib.store.paths import default_checkpoints_dir


@dataclass
class Prediction:
    path: str
    label: str | None = None  # class folder name
    display: str | None = None  # human name of the class
    confidence: float | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    fold_labels: list[str] = field(default_factory=list)  # each fold model's own argmax
    agreement: float | None = None  # share of fold models that agree with the ensemble label
    error: str | None = None
    cam_path: str | None = None

    def to_dict(self) -> dict:
        return {"path": self.path, "label": self.label, "probabilities": self.probabilities, "error": self.error,
                "display": self.display, "confidence": self.confidence, "agreement": self.agreement,
                "fold_labels": self.fold_labels, "cam_path": self.cam_path}


@dataclass
class Explanation:
    rgb: np.ndarray  # the model input (resized image), H×W×3 uint8
    class_idx: int
    gradcam: np.ndarray  # H×W in [0,1], mean over the fold models used
    cbam: np.ndarray | None  # H×W CBAM spatial gate (effnet_cbam only)


class Predictor:
    """A fold ensemble of one arch. Thread-safe: forward passes and CAMs hold ``self.lock``."""

    def __init__(self, spec: DatasetSpec, models: Sequence[torch.nn.Module], cards: Sequence[dict],
                 device: torch.device | None = None):
        if not models:
            raise CheckpointError("no models given")
        self.spec = spec
        self.cards = list(cards)
        card = self.cards[0]
        for c in self.cards[1:]:
            if (c["arch"], c["classes"], c["input_size"]) != (card["arch"], card["classes"], card["input_size"]):
                raise CheckpointError("fold checkpoints disagree on arch, classes or input size")
        if list(card["classes"]) != list(spec.class_dirs):
            raise CheckpointError(f"checkpoint classes {card['classes']} do not match dataset {spec.name}")
        self.arch: str = card["arch"]
        self.classes: list[str] = list(card["classes"])
        self.input_size: int = int(card["input_size"])
        self.mean, self.std = tuple(card["mean"]), tuple(card["std"])
        self.folds: list[int] = [int(c["fold"]) for c in self.cards]
        self.device = device or pick_device()
        self.bf16 = bf16_available(self.device)
        self.models = [m.to(self.device).to(memory_format=torch.channels_last).eval() for m in models]
        self.lock = threading.RLock()

    @classmethod
    def from_checkpoints(cls, spec: DatasetSpec, arch: str = "effnet_cbam", folds: Sequence[int] | None = None,
                         checkpoints_dir: Path | None = None, device: str | None = None) -> Predictor:
        checkpoints_dir = Path(checkpoints_dir or default_checkpoints_dir())
        found = available_folds(spec, arch, checkpoints_dir)
        wanted = list(folds) if folds is not None else found
        missing = [k for k in wanted if k not in found]
        if not wanted or missing:
            what = f"fold(s) {missing}" if missing else "any fold"
            raise CheckpointError(
                f"no checkpoint for {spec.name}/{arch} {what} in {checkpoints_dir}; train with "
                f"`python -m spermlib train --dataset {spec.name} --arch {arch}`"
            )
        loaded = [load_checkpoint(checkpoint_path(spec, arch, k, checkpoints_dir)) for k in wanted]
        return cls(spec, [m for m, _ in loaded], [c for _, c in loaded], device=pick_device(device))

    @property
    def backbone(self) -> str:
        return self.cards[0]["backbone"]

    # ------------------------------------------------------------------ tensors

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """RGB images → uint8 ``(B,3,S,S)``."""
        return torch.stack([to_uint8_tensor(im, self.input_size) for im in images])

    def _input(self, batch_uint8: torch.Tensor) -> torch.Tensor:
        x = normalize(batch_uint8.to(self.device), self.mean, self.std)
        return x.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def fold_probabilities(self, batch_uint8: torch.Tensor) -> np.ndarray:
        """Softmax of every fold model: ``(F, B, C)``."""
        x = self._input(batch_uint8)
        with self.lock, autocast(self.device, self.bf16):
            out = [torch.softmax(m(x).float(), dim=1) for m in self.models]
        return torch.stack(out).cpu().numpy()

    # ------------------------------------------------------------------ images / files

    def predict_images(self, images: Sequence[Image.Image], names: Sequence[str] | None = None,
                       batch_size: int = 64) -> list[Prediction]:
        names = list(names) if names is not None else [f"image {i + 1}" for i in range(len(images))]
        results = []
        for i in range(0, len(images), batch_size):
            fp = self.fold_probabilities(self.preprocess(images[i : i + batch_size]))
            results.extend(self._to_predictions(fp, names[i : i + batch_size]))
        return results

    def _to_predictions(self, fold_probs: np.ndarray, names: Sequence[str]) -> list[Prediction]:
        mean = fold_probs.mean(0)
        out = []
        for b, name in enumerate(names):
            k = int(mean[b].argmax())
            fold_pred = fold_probs[:, b].argmax(1)
            out.append(Prediction(
                path=name, label=self.classes[k], display=self.spec.display(self.classes[k]),
                confidence=float(mean[b, k]),
                probabilities={c: float(p) for c, p in zip(self.classes, mean[b])},
                fold_labels=[self.classes[j] for j in fold_pred],
                agreement=float((fold_pred == k).mean()),
            ))
        return out

    def predict_sources(self, sources: Sequence[ImageSource], names: Sequence[str] | None = None) -> list[Prediction]:
        """Decode and classify; a bad input gets its ``error`` and the rest of the batch still runs."""
        names = list(names) if names is not None else [str(s) for s in sources]
        results: list[Prediction | None] = [None] * len(sources)
        good, good_idx = [], []
        for i, (src, name) in enumerate(zip(sources, names)):
            try:
                good.append(load_rgb(src, name=name))
                good_idx.append(i)
            except ImageError as err:
                results[i] = Prediction(path=name, error=str(err))
        for i, pred in zip(good_idx, self.predict_images(good, [names[i] for i in good_idx])):
            results[i] = pred
        return results  # type: ignore[return-value]

    def predict_files(self, paths: Sequence[str | Path], cam_dir: str | Path | None = None) -> list[Prediction]:
        results = self.predict_sources([str(p) for p in paths])
        if cam_dir:
            out = Path(cam_dir)
            out.mkdir(parents=True, exist_ok=True)
            for p, res in zip(paths, results):
                if res.error:
                    continue
                exp = self.explain(load_rgb(str(p)), class_idx=self.classes.index(res.label))
                target = out / f"{Path(p).stem}_gradcampp.png"
                Image.fromarray(overlay(exp.rgb, exp.gradcam, alpha=0.5)).save(target)
                res.cam_path = str(target)
        return results

    # ------------------------------------------------------------------ explanations

    def explain(self, image: Image.Image, class_idx: int | None = None,
                folds: Sequence[int] | None = None) -> Explanation:
        """Grad-CAM++ (mean over the chosen fold models) and, for CBAM models, the spatial attention."""
        u8 = self.preprocess([image])
        x = self._input(u8)
        use = [i for i, k in enumerate(self.folds) if folds is None or k in folds] or [0]
        if class_idx is None:
            class_idx = int(self.fold_probabilities(u8)[use].mean(0)[0].argmax())
        with self.lock:
            maps = [explain_batch(self.models[i], x, [class_idx]) for i in use]
        cams = [cam[0] for cam, _ in maps]
        atts = [att[0] for _, att in maps if att is not None]
        rgb = u8[0].permute(1, 2, 0).numpy()
        return Explanation(rgb=rgb, class_idx=class_idx, gradcam=np.mean(cams, axis=0),
                           cbam=np.mean(atts, axis=0) if atts else None)


def format_table(results: Sequence[Prediction], spec: DatasetSpec) -> str:
    """Plain-text table for the CLI."""
    names = [spec.display(c) for c in spec.class_dirs]
    width = max([len("image")] + [len(r.path) for r in results])
    head = f"{'image':<{width}}  {'prediction':<11} {'conf':>5} {'agree':>5}  " + "  ".join(f"{n:>9}" for n in names)
    lines = [head, "-" * len(head)]
    for r in results:
        if r.error:
            lines.append(f"{r.path:<{width}}  ERROR: {r.error}")
            continue
        probs = "  ".join(f"{r.probabilities[c]:>9.3f}" for c in spec.class_dirs)
        lines.append(f"{r.path:<{width}}  {r.display:<11} {r.confidence:>5.2f} {r.agreement:>5.0%}  {probs}")
    return "\n".join(lines)
