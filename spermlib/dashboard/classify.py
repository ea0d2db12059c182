"""What the Classify page computes for the image in detail, beyond :mod:`spermlib.dashboard.triage`: its
Grad-CAM++ (and CBAM) explanation by the model that classified it, and the panels and captions shown.

Explanation code imports torch, so it is imported inside the functions (only the pages that load a model
call them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from spermlib.dashboard import triage
from spermlib.dashboard.samples import Route
from spermlib.dashboard.tables import arch_title
from spermlib.errors import SpermlibError

if TYPE_CHECKING:
    from spermlib.inference.explain import Explanation
    from spermlib.inference.predict import Predictor


MAX_UPLOAD_FILES_ENV = "SPERMLIB_MAX_UPLOAD_FILES"
DEFAULT_MAX_UPLOAD_FILES = 50


def max_upload_files() -> int:
    """How many files one upload may hold: ``$SPERMLIB_MAX_UPLOAD_FILES`` (default 50). Every file of an upload
    is decoded and classified by each model chosen, in the one server process every visitor shares."""
    text = os.environ.get(MAX_UPLOAD_FILES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_UPLOAD_FILES
    if not text.isdigit() or int(text) < 1:
        raise SpermlibError(f"${MAX_UPLOAD_FILES_ENV} must be a whole number of files (1 or more), got {text!r}")
    return int(text)


def too_many_uploads(n_files: int, limit: int | None = None) -> str | None:
    """The page's one message when an upload holds more than ``limit`` files (then nothing is classified)."""
    limit = max_upload_files() if limit is None else limit
    if n_files <= limit:
        return None
    return (f"{n_files} files uploaded: this server classifies at most {limit} per upload, so none was classified. "
            f"Remove {n_files - limit} of them (or classify them in several uploads); for large batches use "
            "`spermlib predict FOLDER`.")


def results_csv(table: pd.DataFrame) -> bytes:
    """The results table as the CSV to download, its text cells unable to run as spreadsheet formulas (a file
    named ``=HYPERLINK(…).png`` stays text: :func:`spermlib.fileio.csv_safe_frame`)."""
    return triage.to_csv_bytes(table)


@dataclass(frozen=True)
class Panels:
    """The images shown for one explanation, in order, with one caption each."""

    images: list[np.ndarray]
    captions: list[str]


def explain(predictor: Predictor, image: np.ndarray, class_idx: int) -> Explanation:
    """Grad-CAM++ (and the CBAM map) of ``image`` for class ``class_idx`` by ``predictor`` (a fold model alone,
    or the ensemble); the predictor builds its CAM objects per call, under its lock."""
    from spermlib.inference.explain import Explainer  # torch

    return Explainer(predictor).explain(image, class_idx=class_idx)


def model_name(route: Route | None) -> str:
    """Which model classified an image: ``fold-2 model`` or ``ensemble``."""
    return f"fold-{route.fold} model" if route is not None and route.single_fold else "ensemble"


def explained_by(route: Route | None, n_folds: int) -> str:
    """Which model's map is shown: the fold model alone, or the mean of the ensemble's fold models."""
    return f"fold-{route.fold} model" if route is not None and route.single_fold else f"mean of {n_folds} fold models"


def explanation_panels(exp: Explanation, class_display: str, by: str, alpha: float, with_input: bool) -> Panels:
    """The model input (unless ``with_input`` is off: side by side it is shown once, above the columns), the
    Grad-CAM++ overlay for ``class_display`` at opacity ``alpha``, and the CBAM attention overlay if any."""
    from spermlib.inference.explain import overlay  # torch

    images = [exp.rgb] if with_input else []
    captions = ["model input"] if with_input else []
    images.append(overlay(exp.rgb, exp.gradcam, alpha=alpha))
    captions.append(f"Grad-CAM++ for {class_display} ({by})")
    if exp.cbam is not None:
        images.append(overlay(exp.rgb, exp.cbam, alpha=alpha))
        captions.append("CBAM spatial attention (0.5 = neutral)")
    return Panels(images, captions)


def normal_share_line(arch: str, share: triage.NormalShare) -> str:
    """One model's share of normal forms in words, against the WHO 2021 lower reference limit (markdown)."""
    if share.share is None:
        verdict = "no image was classified as sperm"
    else:
        side = "below" if share.below_who_limit else "at or above"
        verdict = (f"{share.n_normal} of {share.n_sperm} sperm images normal ({share.share:.1%}), {side} the "
                   f"WHO 2021 lower reference limit ({triage.WHO_2021_NORMAL_FORMS_LRL:.0%})")
    extra = [f"{share.n_non_sperm} predicted Non-Sperm left out"] if share.n_non_sperm else []
    extra += [f"{share.n_failed} file(s) failed"] if share.n_failed else []
    return f"**{arch_title(arch)}**: {verdict}" + (f" · {', '.join(extra)}" if extra else "")
