"""Classification of uploaded images for the dashboard, with the warnings a reader needs.

Rules (the thresholds are module constants so pages, docs and tests agree):

* **Low confidence** — the ensemble's top probability is below ``LOW_CONFIDENCE`` (0.60). With 3–4
  classes, chance is 0.25–0.33; below 0.60 the runner-up class is usually within reach.
* **Fold disagreement** — fewer than ``MIN_AGREEMENT`` (80 %) of the fold models vote for the
  ensemble's class, i.e. at least 2 of 5 dissent. One dissenting fold near a class boundary is common
  and not flagged; two or more means the label rests on a narrow majority.
* **Looks like Non-Sperm** (SMIDS task) — predicted Non-Sperm, or P(Non-Sperm) ≥ ``NON_SPERM_PROB``
  (0.30): the patch may hold debris or no sperm cell, and it is left out of the normal-forms share.
* **Not a head crop** (HuSHeM task) — HuSHeM models saw 131 × 131 px crops of single sperm heads;
  an image far from square (aspect ratio outside ``HEAD_CROP_ASPECT``) or much smaller/larger
  (``HEAD_CROP_SIDE``) is probably outside their domain.
* **Out of domain** — the fold models' out-of-domain detector (``calibration.detectors``, fitted on their
  training images by ``spermlib ood``) finds the image unlike anything they were trained on
  (``Prediction.in_domain`` false): its label, however confident, says nothing about the image. A batch
  with any such image gets a banner; when more than ``MAX_OUT_OF_DOMAIN_SHARE`` (20 %) of a batch is out
  of domain, its normal-forms share is withheld: it would describe mostly images the models cannot judge
  (another lab's 240 unstained heads gave 3 % "normal" for a sample labelled 73 % normal).
* **Normal-forms share** (:func:`spermlib.vocabulary.normal_share`, shared with the sample report) —
  images predicted normal ÷ images classified as sperm. For SMIDS, images predicted Non-Sperm are
  excluded from the denominator (they are not sperm); failed files are never counted. Shown against the
  WHO 2021 lower reference limit of 4 % normal forms (WHO laboratory manual for the examination and
  processing of human semen, 6th ed., 2021). It is a screening aid for a handful of images, not a semen
  analysis (which needs ≥ 200 assessed spermatozoa).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd
from PIL import Image

from spermlib.dashboard.samples import Route
from spermlib.data.datasets import DatasetSpec
from spermlib.data.imageio import ImageError, load_rgb
from spermlib.fileio import csv_text
from spermlib.vocabulary import (  # the normal-forms rule: re-exported for the pages
    MAX_OUT_OF_DOMAIN_SHARE,  # noqa: F401
    NON_SPERM_LABEL,
    NORMAL_LABEL,  # noqa: F401
    WHO_2021_NORMAL_FORMS_LRL,  # noqa: F401
    NormalShare,  # noqa: F401
    arch_title,
    normal_share,  # noqa: F401
)

if TYPE_CHECKING:  # torch: the Overview reads NORMAL_LABEL without loading a model
    from spermlib.inference.predict import Prediction, Predictor

LOW_CONFIDENCE = 0.60
MIN_AGREEMENT = 0.80
NON_SPERM_PROB = 0.30
HEAD_CROP_ASPECT = (0.8, 1.25)  # width / height
HEAD_CROP_SIDE = (64, 400)  # px, shorter and longer side

# The results table on screen (the CSV keeps every column): what differs between rows, narrow enough to read.
SHOWN_COLUMNS = ["file", "model", "prediction", "confidence", "in domain", "classified by", "warnings", "error"]



@dataclass(frozen=True)
class TriageWarning:
    kind: str  # out_of_domain | low_confidence | disagreement | non_sperm | not_head_crop
    message: str


@dataclass
class ImageInput:
    """One uploaded or picked file, decoded once (``image`` is ``None`` and ``error`` set if it failed)."""

    name: str
    data: bytes
    image: Image.Image | None = None
    width: int | None = None
    height: int | None = None
    error: str | None = None


@dataclass
class ArchResult:
    """One arch's verdict on one image, with its warnings and which of its models gave it
    (``route``: a single fold model for a bundled sample, see :mod:`spermlib.dashboard.samples`)."""

    arch: str
    prediction: Prediction
    warnings: list[TriageWarning] = field(default_factory=list)
    route: Route | None = None

    @property
    def verdict_source(self) -> str:
        """Who gave the verdict, for the line under the image: the fold model, or the folds' agreement."""
        if self.route is not None and self.route.single_fold:
            return self.route.model
        return agreement_text(self.prediction)


def upload_limit_error(name: str, n_bytes: int, limit_mb: float) -> str | None:
    """The user-facing error for a file over the upload limit (in MB, as Streamlit counts them), else ``None``."""
    limit = int(limit_mb * 1024 * 1024)
    if n_bytes > limit:
        return f"{name}: the file is larger than the upload limit ({n_bytes / 1024 / 1024:.1f} MB > {limit_mb:g} MB)"
    return None


def decode_inputs(items: Sequence[tuple[str, bytes]], limit_mb: float | None = None) -> list[ImageInput]:
    """Decode every (name, bytes) by content; bad ones keep a one-sentence ``error`` and the rest go on."""
    decoded = []
    for name, data in items:
        item = ImageInput(name=name, data=bytes(data))
        too_big = upload_limit_error(name, len(data), limit_mb) if limit_mb is not None else None
        if too_big:
            item.error = too_big
        else:
            try:
                img = load_rgb(item.data, name=name)
                item.image, (item.width, item.height) = img, img.size
            except ImageError as err:
                item.error = str(err)
        decoded.append(item)
    return decoded


def agreement_text(prediction: Prediction) -> str:
    """E.g. ``"4/5 fold models agree"``."""
    n = len(prediction.fold_labels)
    if not n or prediction.agreement is None:
        return ""
    k = round(prediction.agreement * n)
    return f"{k}/{n} fold model{'s' if n != 1 else ''} agree{'s' if n == 1 else ''}"


def looks_like_head_crop(width: int, height: int) -> bool:
    """Roughly the geometry of a HuSHeM crop (131 × 131 px, single head)."""
    if width <= 0 or height <= 0:
        return False
    lo, hi = HEAD_CROP_ASPECT
    side_lo, side_hi = HEAD_CROP_SIDE
    return lo <= width / height <= hi and min(width, height) >= side_lo and max(width, height) <= side_hi


def triage_warnings(prediction: Prediction, spec: DatasetSpec, width: int | None = None,
                    height: int | None = None) -> list[TriageWarning]:
    """The warnings for one prediction (see the module docstring for the rules)."""
    if prediction.error or prediction.label is None:
        return []
    out = []
    if prediction.in_domain is False:
        out.append(TriageWarning(
            "out_of_domain",
            f"Out of domain (domain score {prediction.domain_score:.2f} < 0): this image is unlike the {spec.title} "
            "images the models were trained on (another stain, magnification or camera, or not a sperm image). "
            f"Its label ({prediction.display}) is not trustworthy, however confident.",
        ))
    if prediction.confidence is not None and prediction.confidence < LOW_CONFIDENCE:
        out.append(TriageWarning(
            "low_confidence",
            f"Low confidence: {prediction.confidence:.0%} for {prediction.display} "
            f"(below {LOW_CONFIDENCE:.0%}); treat the label as uncertain.",
        ))
    if prediction.agreement is not None and prediction.fold_labels and prediction.agreement < MIN_AGREEMENT:
        votes = pd.Series(prediction.fold_labels).map(spec.display).value_counts()
        detail = ", ".join(f"{name} {count}" for name, count in votes.items())
        out.append(TriageWarning(
            "disagreement",
            f"Fold models disagree: only {agreement_text(prediction)} on {prediction.display} (votes: {detail}).",
        ))
    non_sperm = NON_SPERM_LABEL.get(spec.name)
    if non_sperm:
        p = prediction.probabilities.get(non_sperm, 0.0)
        if prediction.label == non_sperm or p >= NON_SPERM_PROB:
            if prediction.label == non_sperm:
                text = (f"Looks like Non-Sperm (P = {p:.0%}): the patch may show debris or no sperm cell; "
                        "it is left out of the normal-forms share.")
            else:
                text = (f"May be Non-Sperm (P(Non-Sperm) = {p:.0%}): check that the patch shows a sperm cell "
                        f"before trusting the {prediction.display} label.")
            out.append(TriageWarning("non_sperm", text))
    if spec.name == "hushem" and width and height and not looks_like_head_crop(width, height):
        out.append(TriageWarning(
            "not_head_crop",
            f"This {width} × {height} px image does not look like a HuSHeM head crop (about 131 × 131 px, "
            "one sperm head); the HuSHeM models may be outside their domain.",
        ))
    return out


def classify_inputs(predictors: Mapping[str, Predictor], inputs: Sequence[ImageInput], spec: DatasetSpec,
                    routes: Mapping[str, Sequence[Route]] | None = None,
                    fold_predictor: Callable[[str, int], Predictor] | None = None,
                    ) -> dict[str, list[ArchResult | None]]:
    """Each arch's results in input order (``None`` where the input failed to decode).

    ``predictors`` are the fold ensembles. ``routes[arch][i]`` says which model classifies input ``i``
    (default: the ensemble); a single-fold route is classified by ``fold_predictor(arch, fold)``.
    """
    out: dict[str, list[ArchResult | None]] = {}
    for arch, ensemble in predictors.items():
        arch_routes = list(routes[arch]) if routes else [None] * len(inputs)
        groups: dict[int | None, list[int]] = {}  # fold (None = ensemble) → inputs it classifies
        for i, item in enumerate(inputs):
            if item.error is None:
                groups.setdefault(arch_routes[i].fold if arch_routes[i] else None, []).append(i)
        results: list[ArchResult | None] = [None] * len(inputs)
        for fold, idx in groups.items():
            predictor = ensemble if fold is None else fold_predictor(arch, fold)
            preds = predictor.predict_images([inputs[i].image for i in idx], [inputs[i].name for i in idx])
            for i, pred in zip(idx, preds):
                warnings = triage_warnings(pred, spec, inputs[i].width, inputs[i].height)
                results[i] = ArchResult(arch, pred, warnings, route=arch_routes[i])
        out[arch] = results
    return out


def out_of_domain_banner(results: Mapping[str, Sequence[ArchResult | None]]) -> str | None:
    """One line for the batch when any image is out of domain for any model, else ``None``."""
    parts = []
    for arch, res in results.items():
        flagged = [r for r in res if r is not None and r.prediction.in_domain is False]
        checked = [r for r in res if r is not None and r.prediction.in_domain is not None]
        if flagged:
            parts.append(f"{len(flagged)} of {len(checked)} for {arch_title(arch)}")
    if not parts:
        return None
    return ("Out-of-domain images in this batch (" + "; ".join(parts) + "): they are unlike the training images, so "
            "their labels are not trustworthy. Each is marked below.")


def results_table(inputs: Sequence[ImageInput], results: dict[str, list[ArchResult | None]],
                  spec: DatasetSpec) -> pd.DataFrame:
    """One row per classified file × arch, one row per failed file: prediction, confidence, agreement,
    P(class)…, warnings, error."""
    prob_cols = [f"P({spec.display(c)})" for c in spec.class_dirs]
    columns = ["file", "model", "arch", "prediction", "confidence", "agreement", "classified by", *prob_cols,
               "in domain", "domain score", "warnings", "error"]
    rows = []
    for i, item in enumerate(inputs):
        verdicts = [(arch, res[i]) for arch, res in results.items() if res[i] is not None]
        if not verdicts:
            rows.append({"file": item.name, "arch": "", "warnings": "", "error": item.error or "not classified"})
            continue
        for arch, res in verdicts:
            p = res.prediction
            row = {"file": item.name, "model": arch_title(arch), "arch": arch, "prediction": p.display,
                   "confidence": round(p.confidence, 4),
                   "agreement": "" if res.route and res.route.single_fold else agreement_text(p),
                   "classified by": res.route.model if res.route else "ensemble",
                   # "" = no out-of-domain detector for this model (spermlib ood fits them)
                   "in domain": "" if p.in_domain is None else ("yes" if p.in_domain else "NO"),
                   "domain score": None if p.domain_score is None else round(p.domain_score, 3),
                   "warnings": " | ".join(w.message for w in res.warnings), "error": ""}
            row.update({col: round(p.probabilities[c], 4) for col, c in zip(prob_cols, spec.class_dirs)})
            rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def to_csv_bytes(table: pd.DataFrame) -> bytes:
    """The results table as UTF-8 CSV for the download button (formula-safe: file names are user text)."""
    return csv_text(table).encode("utf-8")
