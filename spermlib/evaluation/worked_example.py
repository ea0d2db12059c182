"""The Overview's worked example: a bundled sample, its out-of-fold prediction, Grad-CAM++ and CBAM maps.

The example is the most confident *correct* out-of-fold prediction among the bundled samples (from the
normal class when there is one), made by the fold model that never saw the image; its maps come from
that same fold model. ``spermlib example`` computes them once and writes them with
:mod:`spermlib.store.examples`, so the Overview shows them without loading torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from spermlib.data.datasets import SAMPLE_DATA_ROOT, DatasetSpec, list_images
from spermlib.data.imageio import load_rgb
from spermlib.store.cards import checkpoint_path, read_card
from spermlib.store.examples import Example, write_example
from spermlib.store.results import ResultsError, evaluate_command, load_oof, prob_column


def pick_example(oof: pd.DataFrame, spec: DatasetSpec, arch: str, present: Iterable[str],
                 preferred_label: str | None = None) -> Example | None:
    """The most confident correct out-of-fold prediction among the images ``present`` (the bundled
    samples), from ``preferred_label`` when one is correct; ``None`` if none is correct."""
    rows = oof[oof["path"].isin(set(present)) & (oof["label"] == oof["pred"])].copy()
    if rows.empty:
        return None
    rows["confidence"] = [float(r[prob_column(r["pred"])]) for _, r in rows.iterrows()]
    rows["preferred"] = rows["label"] == preferred_label
    best = rows.sort_values(["preferred", "confidence", "path"], ascending=[False, False, True]).iloc[0]
    return Example(spec.name, arch, str(best["path"]), int(best["fold"]), str(best["label"]), str(best["pred"]),
                   float(best["confidence"]))


def explain_example(example: Example, spec: DatasetSpec, image_root: Path, checkpoints_dir: Path | None = None):
    """``(panels, inference)``: caption → overlay of the model input, Grad-CAM++ and (CBAM) attention."""
    from spermlib.inference.explain import Explainer, overlay  # torch: the command needs it, the Overview does not
    from spermlib.inference.predict import Predictor

    predictor = Predictor.from_checkpoints(spec, arch=example.arch, folds=[example.fold],
                                           checkpoints_dir=checkpoints_dir)
    exp = Explainer(predictor).explain(load_rgb(image_root / example.path),
                                       class_idx=spec.class_dirs.index(example.pred))
    panels = [("the image", exp.rgb), (f"Grad-CAM++ for {spec.display(example.pred)}",
                                       overlay(exp.rgb, exp.gradcam, alpha=0.5))]
    if exp.cbam is not None:
        panels.append(("CBAM attention", overlay(exp.rgb, exp.cbam, alpha=0.5)))
    from spermlib.runtime import hardware

    return panels, {"device": str(predictor.device), "hardware": hardware(predictor.device),
                    "prediction": "out-of-fold table (evaluate)", "gradcam_precision": "fp32"}


def write_worked_example(spec: DatasetSpec, arch: str, preferred_label: str | None = None,
                         results_dir: Path | None = None, checkpoints_dir: Path | None = None,
                         image_root: Path | None = None) -> Example | None:
    """Pick, explain and store the worked example of ``spec`` (``None``: no bundled sample is correct)."""
    image_root = Path(image_root or SAMPLE_DATA_ROOT / spec.folder)
    oof = load_oof(spec, arch, results_dir)
    if oof is None:
        raise ResultsError(f"no out-of-fold predictions of {spec.name}/{arch}; run `{evaluate_command(spec.name)}`")
    example = pick_example(oof, spec, arch, list_images(spec, image_root)["path"], preferred_label)
    if example is None:
        return None
    panels, inference = explain_example(example, spec, image_root, checkpoints_dir)
    weights = checkpoint_path(spec, arch, example.fold, checkpoints_dir)
    write_example(example, panels, read_card(weights)["weights_sha256"], inference, results_dir)
    return example
