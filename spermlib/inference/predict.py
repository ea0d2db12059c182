"""Inference on new images: fold ensembles, batches, per-file errors. Used by the CLI and the app.

The default model for a dataset is the 5-fold ensemble of one arch: each fold model saw a different
80 % of the data, and averaging their softmax outputs is the usual way to use CV models on new data.
Explanation sits on top of prediction (``inference.explain.Explainer`` wraps a ``Predictor``): nothing here
imports it.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from spermlib.calibration.decision_bias import log_probabilities, softmax
from spermlib.calibration.detectors import Detector, ensemble_domain, load_detector
from spermlib.calibration.store import detector_path
from spermlib.calibration.temperature import softmax_t
from spermlib.data.datasets import DatasetSpec
from spermlib.data.imageio import ImageError, ImageSource, load_rgb
from spermlib.errors import SpermlibError
from spermlib.inference.core import ForwardOutput, InferenceModel, Preprocessing
from spermlib.runtime import Precision, pick_device, precision_policy
from spermlib.store.checkpoints import CheckpointError, available_folds, checkpoint_path, load_checkpoint
from spermlib.store.paths import default_checkpoints_dir

# What every fold of one ensemble must share: the same normalisation and the same output space. The input size
# may differ per fold (a recipe chosen per fold by its own inner validation): see ``ensemble_preprocessing``.
ENSEMBLE_KEYS = ("arch", "backbone", "classes", "mean", "std")
# Images per forward pass (and per decoded batch of files: ``Predictor.iter_sources``).
BATCH_SIZE = 64


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
    cam_error: str | None = None  # why no Grad-CAM++ overlay was written for a prediction that was made
    # Out-of-domain check (``calibration.detectors``): True/False when every fold model has a stored detector, else
    # None (also for a file that failed). ``domain_score``: higher = more typical of the training data,
    # 0 = the flagging threshold (mean of the fold models' normalised scores).
    in_domain: bool | None = None
    domain_score: float | None = None
    # The resized image the models saw (S×S×3 uint8): an explanation reuses it instead of decoding
    # and resizing the file again. Not part of ``to_dict``.
    model_input: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {"path": self.path, "label": self.label, "probabilities": self.probabilities, "error": self.error,
                "display": self.display, "confidence": self.confidence, "agreement": self.agreement,
                "fold_labels": self.fold_labels, "cam_path": self.cam_path, "cam_error": self.cam_error,
                "in_domain": self.in_domain,
                "domain_score": self.domain_score}


def tempered(out: ForwardOutput, temperature: float) -> np.ndarray:
    """``out``'s probabilities at ``temperature``: ``softmax(logits / T)`` for one view; for a TTA mean ``p``
    over views, ``p^(1/T)`` renormalised, which is the same map for one view and, being monotone per image,
    keeps every single model's predicted class (``predict --fold K --tta`` = ``evaluate --tta``). A card's decision
    bias, already in ``out.probabilities``, is added to one view's logits first (the same map)."""
    if out.first is None:
        return softmax_t(out.logits if out.decision_bias is None else out.logits + out.decision_bias, temperature)
    return softmax(log_probabilities(out.probabilities, temperature)).astype(np.float32)


def check_cards_agree(cards: Sequence[dict]) -> None:
    """Refuse an ensemble whose fold cards differ in anything that changes preprocessing or outputs."""
    def value(card: dict, key: str):
        v = card.get(key)
        return tuple(v) if isinstance(v, (list, tuple)) else v  # JSON lists and tuples compare alike

    ref = cards[0]
    for key in ENSEMBLE_KEYS:
        differ = [c for c in cards if value(c, key) != value(ref, key)]
        if differ:
            values = "; ".join(f"fold {c.get('fold')}: {c.get(key)}" for c in [ref, *differ])
            raise CheckpointError(f"fold checkpoints of one ensemble disagree on {key} ({values}); "
                                  "load folds trained with the same recipe")


def ensemble_preprocessing(cards: Sequence[dict]) -> Preprocessing:
    """What an ensemble decodes every image to: the largest input size of its fold cards. A fold trained at a
    smaller size resizes that batch to its own (``Preprocessing.resized``); a single fold gets exactly its own
    preprocessing, so ``predict --fold K`` computes what ``evaluate`` computed for fold K."""
    return Preprocessing.from_card(max(cards, key=lambda c: int(c["input_size"])))


class Predictor:
    """A fold ensemble of one arch on the inference core. Thread-safe: forward passes and CAMs hold ``self.lock``."""

    def __init__(self, spec: DatasetSpec, models: Sequence[torch.nn.Module], cards: Sequence[dict],
                 device: torch.device | None = None, precision: Precision | str = "auto", tta: bool = False):
        if not models:
            raise CheckpointError("no models given")
        check_cards_agree(cards)
        card = cards[0]
        if list(card["classes"]) != list(spec.class_dirs):
            raise CheckpointError(f"checkpoint classes {card['classes']} do not match dataset {spec.name}")
        self.spec = spec
        self.cards = list(cards)
        self.arch: str = card["arch"]
        self.classes: list[str] = list(card["classes"])
        self.prep = ensemble_preprocessing(self.cards)
        self.folds: list[int] = [int(c["fold"]) for c in self.cards]
        self.device = device or pick_device()
        if not isinstance(precision, Precision):
            precision = precision_policy(self.device, precision)
        self.fold_models = [InferenceModel(m, Preprocessing.from_card(c), self.device, precision,
                                           decision_bias=c.get("decision_bias")) for m, c in zip(models, self.cards)]
        self.models = [fm.model for fm in self.fold_models]
        self.precision = precision
        # Test-time augmentation: each fold model's softmax is the mean over the 8 flips/90° turns of the image
        # (``core.tta_views``, as ``evaluate --tta``); the out-of-domain check still scores the image itself.
        self.tta = bool(tta)
        self.lock = threading.RLock()
        # Out-of-domain detectors: looked up on first use in ``checkpoints_dir`` (set by from_checkpoints), one
        # dict shared with every ``subset`` view; a fold without one (or an unreadable one) gives in_domain None.
        self.checkpoints_dir: Path | None = None
        self._detectors: dict[int, Detector | None] = {}
        self.domain_note: str | None = None  # why a stored detector could not be used

    @classmethod
    def from_checkpoints(cls, spec: DatasetSpec, arch: str = "effnet_cbam", folds: Sequence[int] | None = None,
                         checkpoints_dir: Path | None = None, device: str | None = None,
                         tta: bool = False, precision: Precision | str = "auto") -> Predictor:
        checkpoints_dir = Path(checkpoints_dir or default_checkpoints_dir())
        found = available_folds(spec, arch, checkpoints_dir)
        wanted = list(folds) if folds is not None else found
        missing = [k for k in wanted if k not in found]
        if not wanted or missing:
            what = f"fold(s) {missing}" if missing else "any fold"
            raise CheckpointError(
                f"no checkpoint for {spec.name}/{arch} {what} in {checkpoints_dir}; train with "
                f"`spermlib train --dataset {spec.name} --arch {arch}`"
            )
        loaded = [load_checkpoint(checkpoint_path(spec, arch, k, checkpoints_dir)) for k in wanted]
        predictor = cls(spec, [m for m, _ in loaded], [c for _, c in loaded], device=pick_device(device), tta=tta,
                        precision=precision)
        predictor.checkpoints_dir = checkpoints_dir
        return predictor

    @property
    def backbone(self) -> str:
        return self.cards[0]["backbone"]

    @property
    def input_size(self) -> int:
        return self.prep.input_size

    @property
    def mean(self) -> tuple[float, ...]:
        return self.prep.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.prep.std

    def model_indices(self, folds: Sequence[int] | None = None) -> list[int]:
        """Positions in ``self.models`` of ``folds`` (all when ``None``); a fold not loaded is an error."""
        if folds is None:
            return list(range(len(self.folds)))
        missing = [k for k in folds if k not in self.folds]
        if missing or not folds:
            raise CheckpointError(f"{self.spec.name}/{self.arch}: fold(s) {list(missing or folds)} not loaded "
                                  f"(loaded: {self.folds})")
        return [self.folds.index(k) for k in folds]

    def subset(self, folds: Sequence[int]) -> Predictor:
        """This ensemble restricted to ``folds``: the same model objects and the same lock (so a page can
        classify a bundled sample with the fold that never saw it without loading that fold again)."""
        idx = self.model_indices(folds)
        view = copy.copy(self)  # shallow: shares the models, the preprocessing and ``self.lock``
        view.cards = [self.cards[i] for i in idx]
        view.folds = [self.folds[i] for i in idx]
        view.fold_models = [self.fold_models[i] for i in idx]
        view.models = [self.models[i] for i in idx]
        view.prep = ensemble_preprocessing(view.cards)
        return view

    def with_tta(self, tta: bool = True) -> Predictor:
        """This ensemble with test-time augmentation on (or off): the same models and lock (see :meth:`subset`)."""
        if tta == self.tta:
            return self
        view = copy.copy(self)
        view.tta = bool(tta)
        return view

    def fold_model(self, fold: int) -> InferenceModel:
        """The fold-``fold`` model with this ensemble's preprocessing and precision."""
        return self.fold_models[self.model_indices([fold])[0]]

    # ------------------------------------------------------------------ tensors

    def preprocess(self, images: Sequence[Image.Image | np.ndarray]) -> torch.Tensor:
        """RGB images (or ``Prediction.model_input`` arrays) → uint8 ``(B,3,S,S)``, S the ensemble's input size."""
        return self.prep.uint8(images)

    def model_input(self, batch_uint8: torch.Tensor, fold: int | None = None) -> torch.Tensor:
        """The normalised tensor fold model ``fold`` sees (at its own input size); by default at the ensemble's."""
        prep = self.prep if fold is None else self.fold_model(fold).prep
        return prep.model_input(batch_uint8, self.device, self.precision)

    def forward(self, batch_uint8: torch.Tensor, folds: Sequence[int] | None = None,
                stats: bool = False) -> list[ForwardOutput]:
        """One core pass per chosen fold model (all by default), under ``self.lock``; ``stats``: with the
        early-map statistics an out-of-domain detector may need (``core.channel_stats``)."""
        with self.lock:
            return [self.fold_models[i](batch_uint8, stats=stats, tta=self.tta) for i in self.model_indices(folds)]

    def fold_probabilities(self, batch_uint8: torch.Tensor, folds: Sequence[int] | None = None) -> np.ndarray:
        """Softmax of every (chosen) fold model, ``(F, B, C)``, temperature-scaled where the card has one."""
        return self._calibrated(self.forward(batch_uint8, folds), folds)

    def _calibrated(self, outs: Sequence[ForwardOutput], folds: Sequence[int] | None) -> np.ndarray:
        cards = [self.cards[i] for i in self.model_indices(folds)]
        # A card's ``temperature`` (``spermlib ood``) is there only when it lowered the out-of-fold ECE.
        return np.stack([tempered(o, c["temperature"]) if c.get("temperature") else o.probabilities
                         for o, c in zip(outs, cards)])

    def _score(self, batch_uint8: torch.Tensor, folds: Sequence[int] | None = None
               ) -> tuple[np.ndarray, np.ndarray | None]:
        """One core pass: calibrated fold probabilities ``(F, B, C)`` and normalised domain scores ``(F, B)``
        (``None`` when a fold model has no detector)."""
        detectors = self.detectors(self.folds if folds is None else folds)
        outs = self.forward(batch_uint8, folds, stats=detectors is not None and any(d.needs_stats for d in detectors))
        probs = self._calibrated(outs, folds)
        # A detector scores the image itself (with TTA, the unaugmented view): what it was fitted on.
        scores = None if detectors is None else np.stack([d.score(o.unaugmented.features, o.unaugmented.logits,
                                                                  o.stats) for d, o in zip(detectors, outs)])
        return probs, scores

    def detectors(self, folds: Sequence[int] | None = None) -> list[Detector] | None:
        """The out-of-domain detectors of ``folds`` (all loaded folds by default), read on first use; ``None``
        unless every one of them has a detector fitted on its weights."""
        folds = self.folds if folds is None else list(folds)
        with self.lock:
            for k in folds:
                if k not in self._detectors:
                    self._detectors[k] = self._load_detector(k)
            found = [self._detectors[k] for k in folds]
        return None if any(d is None for d in found) else found  # type: ignore[return-value]

    def _load_detector(self, fold: int) -> Detector | None:
        if self.checkpoints_dir is None:
            return None
        card = self.cards[self.folds.index(fold)]
        try:
            return load_detector(detector_path(self.spec, self.arch, fold, self.checkpoints_dir),
                                 card.get("weights_sha256"))
        except SpermlibError as err:  # an unreadable detector must not stop the prediction itself
            self.domain_note = str(err)
            return None

    # ------------------------------------------------------------------ images / files

    def predict_images(self, images: Sequence[Image.Image | np.ndarray], names: Sequence[str] | None = None,
                       batch_size: int = BATCH_SIZE, keep_inputs: bool = True) -> list[Prediction]:
        """Ensemble predictions; each keeps its ``model_input`` unless ``keep_inputs`` is false."""
        names = list(names) if names is not None else [f"image {i + 1}" for i in range(len(images))]
        results = []
        for i in range(0, len(images), batch_size):
            results.extend(self._predict_uint8(self.preprocess(images[i : i + batch_size]), names[i : i + batch_size],
                                               keep_inputs))
        return results

    def _predict_uint8(self, u8: torch.Tensor, names: Sequence[str], keep_inputs: bool) -> list[Prediction]:
        preds = self._to_predictions(*self._score(u8), names)
        if keep_inputs:
            for pred, x in zip(preds, u8):
                pred.model_input = x.permute(1, 2, 0).numpy()
        return preds

    def _to_predictions(self, fold_probs: np.ndarray, fold_scores: np.ndarray | None,
                        names: Sequence[str]) -> list[Prediction]:
        mean = fold_probs.mean(0)
        domain, in_domain = ensemble_domain(fold_scores) if fold_scores is not None else (None, None)
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
                in_domain=None if in_domain is None else bool(in_domain[b]),
                domain_score=None if domain is None else float(domain[b]),
            ))
        return out

    def iter_sources(self, sources: Sequence[ImageSource], names: Sequence[str] | None = None,
                     batch_size: int = BATCH_SIZE, keep_inputs: bool = True) -> Iterator[list[Prediction]]:
        """Decode, classify and hand back ``batch_size`` sources at a time, in order; a bad input gets its
        ``error`` and the rest still runs. Memory does not grow with the number of sources: each file is
        resized to the model input as soon as it is decoded, so one full-size image is alive at a time and
        a batch holds only model inputs (a folder of 2000×2000 px images no longer decodes every file first)."""
        names = list(names) if names is not None else [str(s) for s in sources]
        for start in range(0, len(sources), batch_size):
            stop = start + batch_size
            yield self._predict_batch(sources[start:stop], names[start:stop], keep_inputs)

    def _predict_batch(self, sources: Sequence[ImageSource], names: Sequence[str],
                       keep_inputs: bool) -> list[Prediction]:
        results: list[Prediction | None] = [None] * len(sources)
        inputs, good_idx = [], []
        for i, (src, name) in enumerate(zip(sources, names)):
            try:
                inputs.append(self.preprocess([load_rgb(src, name=name)])[0])  # the full-size image is dropped here
                good_idx.append(i)
            except ImageError as err:
                results[i] = Prediction(path=name, error=str(err))
        if inputs:
            preds = self._predict_uint8(torch.stack(inputs), [names[i] for i in good_idx], keep_inputs)
            for i, pred in zip(good_idx, preds):
                results[i] = pred
        return results  # type: ignore[return-value]

    def predict_sources(self, sources: Sequence[ImageSource], names: Sequence[str] | None = None,
                        keep_inputs: bool = True) -> list[Prediction]:
        """Decode and classify; a bad input gets its ``error`` and the rest of the batch still runs."""
        return [pred for batch in self.iter_sources(sources, names, keep_inputs=keep_inputs) for pred in batch]

    def predict_files(self, paths: Sequence[str | Path]) -> list[Prediction]:
        """Classify files (``explain.Explainer.predict_files`` also writes a Grad-CAM++ overlay per file)."""
        return self.predict_sources([str(p) for p in paths], keep_inputs=False)


def format_table(results: Sequence[Prediction], spec: DatasetSpec) -> str:
    """Plain-text table for the CLI."""
    names = [spec.display(c) for c in spec.class_dirs]
    width = max([len("image")] + [len(r.path) for r in results])
    head = (f"{'image':<{width}}  {'prediction':<11} {'conf':>5} {'agree':>5}  "
            + "  ".join(f"{n:>9}" for n in names) + f"  {'in_domain':>9} {'domain_score':>12}")
    lines = [head, "-" * len(head)]
    for r in results:
        if r.error:
            lines.append(f"{r.path:<{width}}  ERROR: {r.error}")
            continue
        probs = "  ".join(f"{r.probabilities[c]:>9.3f}" for c in spec.class_dirs)
        # "-": no detector stored for these checkpoints (spermlib ood fits them)
        in_domain = "-" if r.in_domain is None else ("yes" if r.in_domain else "NO")
        score = "-" if r.domain_score is None else f"{r.domain_score:.2f}"
        lines.append(f"{r.path:<{width}}  {r.display:<11} {r.confidence:>5.2f} {r.agreement:>5.0%}  {probs}  "
                     f"{in_domain:>9} {score:>12}")
    return "\n".join(lines)
