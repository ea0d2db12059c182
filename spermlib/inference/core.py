"""The inference core: the only code that runs a model forward outside training.

Prediction (``predict.Predictor``), out-of-fold evaluation with or without test-time augmentation,
faithfulness (which class to explain), embeddings and the bench's "ours" rows all call
:func:`forward`, so they share

* one preprocessing (:class:`Preprocessing`): resize once to the card's input size
  (``data.preprocess``), normalise with the card's mean/std on the target device;
* one precision policy (``runtime.Precision``: bf16 autocast + channels_last where the hardware has
  native bf16, else fp32), whose ``name`` callers record next to their numbers;
* one model per checkpoint as inference runs it (:class:`InferenceModel`): a copy with the batch norms
  folded into the convolutions (``models.fusion``: the same function up to rounding, checked in fp32
  when it is made; ~12 % faster on this CPU), the trained model kept beside it;
* one pass that yields probabilities, logits and pooled pre-logit features together
  (:class:`ForwardOutput`): ``forward_features`` → ``forward_head(pre_logits=True)`` →
  ``get_classifier()``, the same operations as ``model(x)`` in eval mode (tested bit-exact);
  with ``stats=True`` the same pass also summarises the model's early feature maps
  (``forward_features_and_taps``: per-channel mean and standard deviation, :func:`channel_stats`), which
  out-of-domain detection (``calibration.detectors``) reads; with ``tta=True`` the 8 flips/90° turns of each
  image go through one stacked pass and their mean is returned;
* the card's decision bias (``calibration.decision_bias``), where its inner validation took one: applied to the
  probabilities of the mode it was fitted for (one view, or the TTA mean), so every caller's predicted class
  is the one ``predict`` reports. Logits, features and statistics stay the model's own.

Grad-CAM++ (``explain``) differentiates the head in fp32 on a backbone pass of its own (run under this
core's precision); it explains the class this core predicted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image
from torch import nn

from spermlib.calibration.decision_bias import ONE_VIEW, TTA, apply_bias
from spermlib.data.preprocess import normalize, to_uint8_tensor
from spermlib.models.fusion import fold_batchnorm
from spermlib.runtime import Precision, pick_device, precision_policy

EVAL_BATCH = 128  # inputs per forward pass in evaluation (with TTA: 16 images × 8 views); metrics.json used it
N_VIEWS = 8  # test-time augmentation: the 8 flips/90° rotations of ``tta_views``


def tta_views(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 flips/90° rotations (the augmentation group the models were trained with)."""
    views = []
    for flip in (False, True):
        base = x.flip(-1) if flip else x
        views.extend(torch.rot90(base, k, dims=(-2, -1)) for k in range(4))
    return views


@dataclass(frozen=True)
class Preprocessing:
    """Image → model input, as a checkpoint's card prescribes."""

    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_card(cls, card: dict) -> Preprocessing:
        return cls(int(card["input_size"]), tuple(card["mean"]), tuple(card["std"]))

    def uint8(self, images: Sequence[Image.Image | np.ndarray]) -> torch.Tensor:
        """RGB images (PIL, or H×W×3 uint8 arrays such as a prediction's ``model_input``) → ``(B,3,S,S)`` uint8.

        An array already at the input size is taken as is (no second resize).
        """
        return torch.stack([to_uint8_tensor(im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im)),
                                            self.input_size) for im in images])

    def resized(self, batch_uint8: torch.Tensor) -> torch.Tensor:
        """A uint8 ``(B,3,H,W)`` batch at this input size: as is when it already is, else each image resized as
        :meth:`uint8` resizes a decoded one. An ensemble whose folds were trained at different sizes hands every
        fold the batch at the largest size; a smaller fold takes it from there (``Predictor``)."""
        if tuple(batch_uint8.shape[-2:]) == (self.input_size, self.input_size):
            return batch_uint8
        return self.uint8([im.permute(1, 2, 0).numpy() for im in batch_uint8.cpu()])

    def model_input(self, batch_uint8: torch.Tensor, device: torch.device, precision: Precision) -> torch.Tensor:
        """uint8 ``(B,3,S,S)`` (resized to S if it is not) → normalised float32 on ``device``, in the policy's
        memory format."""
        x = normalize(self.resized(batch_uint8).to(device), self.mean, self.std)
        return x.contiguous(memory_format=torch.channels_last) if precision.channels_last else x


@dataclass
class ForwardOutput:
    """One forward pass over a batch; with TTA, the mean over the 8 views of each field."""

    probabilities: np.ndarray  # (B, C) float32: softmax of the float32 logits
    logits: np.ndarray  # (B, C) float32
    features: np.ndarray  # (B, D) float32: pooled pre-logit features (what the classifier sees)
    precision: str  # Precision.name of the pass
    device: str
    stats: np.ndarray | None = None  # (B, S) float32 early-map statistics (``forward(stats=True)`` only)
    stats_sizes: tuple[int, ...] = ()  # width of each early map's part of ``stats`` (2 × its channels)
    # With TTA: the unaugmented view's own output (what an out-of-domain detector was fitted on); else None.
    first: ForwardOutput | None = None
    # The card's decision bias (raw-logit scale) that ``probabilities`` include: softmax(log p + bias); else None.
    decision_bias: np.ndarray | None = None

    @property
    def unaugmented(self) -> ForwardOutput:
        """The output for the image as it is: ``first`` with TTA, else this output itself."""
        return self.first or self

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(1)


def channel_stats(maps: Sequence[torch.Tensor]) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Each ``(B, C, H, W)`` map's per-channel mean and standard deviation over its positions, in float32:
    ``(B, Σ 2C)`` and the width of each map's part."""
    parts = []
    for m in maps:
        var, mean = torch.var_mean(m.float(), dim=(2, 3), correction=0)  # one pass: 20 % faster than mean + std
        parts.append(torch.cat([mean, var.sqrt()], 1))
    if not parts:
        return torch.zeros(0), ()
    return torch.cat(parts, 1), tuple(int(p.shape[1]) for p in parts)


def _chunk(model: nn.Module, x: torch.Tensor, device: torch.device, precision: Precision, stats: bool,
           stats_rows: int | None = None):
    """One forward pass; with ``stats``, the early-map statistics of the first ``stats_rows`` rows (all)."""
    with precision.autocast(device):
        if stats:
            feats, maps = model.forward_features_and_taps(x)
        else:
            feats, maps = model.forward_features(x), []
        pre = model.forward_head(feats, pre_logits=True)
        logits = model.get_classifier()(pre)
    logits = logits.float()
    rows = len(x) if stats_rows is None else stats_rows
    summary, sizes = channel_stats([m[:rows] for m in maps]) if stats else (torch.zeros(rows, 0), ())
    return (torch.softmax(logits, dim=1).cpu(), logits.cpu(), pre.float().cpu(), summary.cpu()), sizes


def _passes(model: nn.Module, x_uint8: torch.Tensor, prep: Preprocessing, device: torch.device,
            precision: Precision, batch_size: int, stats: bool, tta: bool):
    """Yields ``(fields, first, sizes)`` per pass: ``fields`` = (probabilities, logits, features, stats), each
    ``(b, …)``; ``first`` = the unaugmented view's (probabilities, logits, features) with ``tta``, else None.
    With ``tta`` each pass stacks the 8 views of ``batch_size // 8`` images (one image's views in one batch of 8:
    ~2× faster than 8 passes on 2 cores) and returns their mean; the statistics are the unaugmented view's."""
    per = max(1, batch_size // N_VIEWS) if tta else batch_size
    for i in range(0, len(x_uint8), per):
        xs = x_uint8[i : i + per]
        b = len(xs)
        stacked = torch.cat([v.contiguous() for v in tta_views(xs)]) if tta else xs  # view-major rows
        (probs, logits, pre, summary), sizes = _chunk(model, prep.model_input(stacked, device, precision), device,
                                                      precision, stats, stats_rows=b)
        if not tta:
            yield (probs, logits, pre, summary), None, sizes
            continue
        means = [t.view(N_VIEWS, b, -1).mean(0) for t in (probs, logits, pre)]
        yield (*means, summary), (probs[:b], logits[:b], pre[:b]), sizes


@torch.inference_mode()
def forward(model: nn.Module, x_uint8: torch.Tensor, prep: Preprocessing, device: torch.device,
            precision: Precision, batch_size: int = EVAL_BATCH, tta: bool = False, stats: bool = False
            ) -> ForwardOutput:
    """Probabilities, logits and features of a uint8 batch (resized to the input size if it is not), in
    passes of ``batch_size`` inputs.

    ``model`` must already be on ``device`` (see :func:`ready_model`). With ``tta`` the probabilities,
    logits and features are the mean over the 8 flip/rotation views (stacked: ``batch_size // 8`` images
    per pass), and ``first`` is the unaugmented view's own output. With ``stats`` the output also carries the
    early-map statistics (:func:`channel_stats` of ``forward_features_and_taps``), of the unaugmented view.
    """
    ensure_eval(model)
    if not len(x_uint8):
        empty = np.zeros((0, model.num_classes), np.float32)
        return ForwardOutput(empty, empty.copy(), np.zeros((0, model.num_features), np.float32), precision.name,
                             str(device), np.zeros((0, 0), np.float32) if stats else None)
    x_uint8 = prep.resized(x_uint8)  # before the TTA views: each view is then a flip/turn of the same pixels
    passes = list(_passes(model, x_uint8, prep, device, precision, batch_size, stats, tta))
    sizes = passes[0][2]
    probs, logits, feats, summary = (torch.cat(field).numpy() for field in zip(*(p[0] for p in passes)))
    summary = summary if stats else None
    first = None
    if tta:
        probs0, logits0, feats0 = (torch.cat(field).numpy() for field in zip(*(p[1] for p in passes)))
        first = ForwardOutput(probs0, logits0, feats0, precision.name, str(device), summary, sizes)
    return ForwardOutput(probs, logits, feats, precision.name, str(device), summary, sizes, first)


def with_decision_bias(out: ForwardOutput, bias: Mapping[str, Sequence[float]] | None) -> ForwardOutput:
    """``out`` with a card's ``decision_bias`` applied to each mode's probabilities: the TTA mean takes the
    ``tta`` entry, a one-view output (or a TTA output's ``first``) the ``one_view`` entry."""
    if not bias:
        return out

    def one(o: ForwardOutput, key: str) -> ForwardOutput:
        if bias.get(key) is None:
            return o
        b = np.asarray(bias[key], np.float32)
        return replace(o, probabilities=apply_bias(o.probabilities, b), decision_bias=b)

    if out.first is None:
        return one(out, ONE_VIEW)
    return replace(one(out, TTA), first=one(out.first, ONE_VIEW))


def ensure_eval(model: nn.Module) -> nn.Module:
    """``model`` in eval mode. ``nn.Module.eval()`` walks every submodule through ``__setattr__`` (~0.4 ms
    for EfficientNet-Lite0 + CBAM on 2 cores, 1.8 ms under cProfile), so it runs only when the
    model is in training mode; ``train()``/``eval()`` always set the whole tree, so the root's flag says it."""
    if model.training:
        model.eval()
    return model


def ready_model(model: nn.Module, device: torch.device, precision: Precision) -> nn.Module:
    """``model`` on ``device`` in eval mode and in the policy's memory format (in place)."""
    model = model.to(device).eval()
    return model.to(memory_format=torch.channels_last) if precision.channels_last else model


class InferenceModel:
    """One model ready for :func:`forward`: its weights on the device, its card's preprocessing, a policy.

    ``model`` is what inference runs: a copy of the trained model with its batch norms folded into the
    convolutions (``models.fusion``; checked against the original, which it falls back to). ``trained`` is
    the model as given (unfolded: what a checkpoint stores), left where it was.
    """

    def __init__(self, model: nn.Module, prep: Preprocessing, device: torch.device | str | None = None,
                 precision: Precision | str = "auto", fold_bn: bool = True,
                 decision_bias: Mapping[str, Sequence[float]] | None = None):
        self.decision_bias = dict(decision_bias or {})  # the card's, per mode (``calibration.decision_bias``)
        self.device = device if isinstance(device, torch.device) else pick_device(device)
        self.precision = precision if isinstance(precision, Precision) else precision_policy(self.device, precision)
        self.prep = prep
        self.trained = model
        self.folded_bn = 0
        if fold_bn:
            model, self.folded_bn = fold_batchnorm(model, prep.input_size)
        self.model = ready_model(model, self.device, self.precision)

    @classmethod
    def from_card(cls, model: nn.Module, card: dict, device: torch.device | str | None = None,
                  precision: Precision | str = "auto", fold_bn: bool = True) -> InferenceModel:
        return cls(model, Preprocessing.from_card(card), device, precision, fold_bn, card.get("decision_bias"))

    def __call__(self, x_uint8: torch.Tensor, batch_size: int = EVAL_BATCH, tta: bool = False,
                 stats: bool = False) -> ForwardOutput:
        out = forward(self.model, x_uint8, self.prep, self.device, self.precision, batch_size, tta, stats)
        return with_decision_bias(out, self.decision_bias)

    def model_input(self, batch_uint8: torch.Tensor) -> torch.Tensor:
        """The normalised tensor this model sees (what Grad-CAM++ explains, in fp32)."""
        return self.prep.model_input(batch_uint8, self.device, self.precision)


def predict_proba(
    model: nn.Module, x_uint8: torch.Tensor, mean, std, device: torch.device, bf16: bool, channels_last: bool,
    batch_size: int = EVAL_BATCH,
) -> np.ndarray:
    """Softmax probabilities for a uint8 batch, in chunks (training's inner validation calls this)."""
    if not len(x_uint8):
        return np.zeros((0, 0))
    prep = Preprocessing(int(x_uint8.shape[-1]), tuple(mean), tuple(std))
    return forward(model, x_uint8, prep, device, Precision(bf16, channels_last), batch_size).probabilities
