"""What the misclassification explorer decides, without Streamlit (views/mistakes.py only lays it out).

* its widget keys, and how a :class:`~spermlib.dashboard.state.MistakesPreset` from another page
  fills them;
* which results entries are plain models and which are the same models scored with TTA;
* for one image, per plain model: the fold model that never saw it (its fold in the OOF row),
  whether that fold's checkpoint is installed, and the confidence of the predicted class.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from spermlib.dashboard.compare import chart_entries
from spermlib.dashboard.resources import shown_path
from spermlib.dashboard.state import MistakesPreset
from spermlib.dashboard.tables import disagreement, prediction_table
from spermlib.data.datasets import DatasetSpec
from spermlib.data.imageio import load_rgb
from spermlib.store.cards import available_folds
from spermlib.store.results import base_arch, is_tta, prob_column

DATASET_KEY = "mistakes_dataset"
CONFIDENCE_KEY = "mistakes_conf"
ERRORS_ONLY_KEY = "mistakes_errors_only"
DISAGREE_KEY = "mistakes_disagree"
PAGE_KEY = "mistakes_page"
# The list on screen: what a reader scans (the CSV export keeps every column); narrow enough for a phone.
SHOWN_COLUMNS = ["path", "label", "pred", "confidence", "fold", "disagree"]


def arch_key(dataset: str) -> str:
    return f"mistakes_arch_{dataset}"


def true_key(dataset: str) -> str:
    return f"mistakes_true_{dataset}"


def pred_key(dataset: str) -> str:
    return f"mistakes_pred_{dataset}"


def image_key(dataset: str) -> str:
    return f"mistakes_image_{dataset}"


def apply_preset(state: MutableMapping) -> MistakesPreset | None:
    """Copy a waiting preset into the explorer's widget keys (call before the widgets exist).

    The filters it does not name go back to their defaults, so a filter narrowed earlier (e.g. the
    confidence range) cannot hide the images the other page sent the user to see.
    """
    preset = MistakesPreset.take(state)
    if preset is None:
        return None
    ds = preset.dataset
    state[DATASET_KEY] = ds
    state[arch_key(ds)] = preset.arch
    state[true_key(ds)] = list(preset.true)
    state[pred_key(ds)] = list(preset.pred)
    state[ERRORS_ONLY_KEY] = preset.errors_only
    for key in (CONFIDENCE_KEY, DISAGREE_KEY, PAGE_KEY, image_key(ds)):
        state.pop(key, None)
    return preset


def plain_entries(entries: Iterable[str]) -> list[str]:
    """Results entries that are models of their own (``effnet``), not a model re-scored with TTA:
    only these are compared for disagreement and explained side by side."""
    return [e for e in entries if not is_tta(e)]


def mistakes_table(oofs: Mapping[str, pd.DataFrame], entry: str, spec: DatasetSpec) -> pd.DataFrame:
    """``entry``'s out-of-fold predictions with the derived columns of
    :func:`~spermlib.dashboard.tables.prediction_table`, the disagreement of the plain models and each
    other plain model's prediction."""
    others = {e: oofs[e] for e in plain_entries(oofs) if e != entry}
    return prediction_table(oofs[entry], spec, disagreement(oofs), others)


@dataclass(frozen=True)
class FoldExplanation:
    """What one plain model's column beside an image shows.

    ``fold`` is the fold model that never saw the image (``None``: the model has no out-of-fold
    prediction for it); ``installed`` whether that fold's checkpoint is on disk.
    """

    entry: str
    arch: str
    fold: int | None
    installed: bool
    label: str | None = None
    pred: str | None = None
    confidence: float | None = None  # of the predicted class

    @property
    def ready(self) -> bool:
        return self.fold is not None and self.installed

    @property
    def correct(self) -> bool:
        return self.pred == self.label

    def target(self, explain_true_class: bool) -> str | None:
        """The class whose Grad-CAM++ map to show."""
        return self.label if explain_true_class else self.pred

    def notice(self, dataset: str, checkpoints_dir: Path, title: str) -> str | None:
        """Why there is no map (``None`` when there is one); ``title`` names the model, the checkpoints folder is
        named as a visitor may see it (:func:`~spermlib.dashboard.resources.shown_path`)."""
        if self.fold is None:
            return "No out-of-fold prediction of this model for this image."
        if not self.installed:
            return (f"The fold-{self.fold} checkpoint of {title} is not installed in `{shown_path(checkpoints_dir)}`; "
                    "train it with "
                    f"`spermlib train --dataset {dataset} --arch {self.arch} --fold {self.fold}`.")
        return None


def missing_images_notice(missing: int, listed: int, spec: DatasetSpec, root: Path) -> str:
    """Why ``missing`` of the ``listed`` images have no thumbnail. The data folder is named by its dataset and
    as :func:`~spermlib.dashboard.resources.shown_path` shows it, never by the server's absolute path."""
    return (f"{missing} of {listed} listed images are not in this installation's {spec.folder} data folder "
            f"(`{shown_path(root)}`): these results were computed on images it does not have (e.g. the full "
            "dataset, while only the bundled sample is here). They stay in the table and the CSV but have no "
            "thumbnail. Point $SPERM_DATA_DIR at the full dataset to see them.")


def fold_explanations(oofs: Mapping[str, pd.DataFrame], path: str, spec: DatasetSpec,
                      checkpoints_dir: Path) -> list[FoldExplanation]:
    """Per plain model, the paper's model first (as on the comparison page): which fold model explains
    image ``path`` and whether it is installed."""
    out = []
    for entry in chart_entries(list(oofs), with_tta=False):
        arch = base_arch(entry)
        rows = oofs[entry][oofs[entry]["path"] == path]
        if rows.empty:
            out.append(FoldExplanation(entry, arch, fold=None, installed=False))
            continue
        row = rows.iloc[0]
        fold = int(row["fold"])
        out.append(FoldExplanation(
            entry, arch, fold, installed=fold in available_folds(spec, arch, checkpoints_dir),
            label=str(row["label"]), pred=str(row["pred"]), confidence=float(row[prob_column(row["pred"])])))
    return out


def explained_overlays(predictor, image_path: str, fold: int, class_idx: int,
                       name: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Grad-CAM++ overlay (and CBAM overlay, if the model has CBAM) of the fold-``fold`` model of ``predictor``
    for one image file, for class ``class_idx`` (``name``: what an error about the file calls it)."""
    from spermlib.inference.explain import Explainer, overlay  # torch: only once a map is computed

    exp = Explainer(predictor).explain(load_rgb(image_path, name=name), class_idx=class_idx, folds=[fold])
    cam = overlay(exp.rgb, exp.gradcam, alpha=0.5)
    att = overlay(exp.rgb, exp.cbam, alpha=0.5) if exp.cbam is not None else None
    return cam, att
