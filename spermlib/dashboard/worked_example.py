"""The Overview's worked example, decided without Streamlit: which one, its maps, what it says.

The example is a bundled sample that the paper's model classified correctly *out of fold* (by the fold
model that never saw it), preferring the normal class (:func:`spermlib.evaluation.worked_example.pick_example`).
``spermlib example`` stores it with its maps; the Overview shows the stored one while its fold
checkpoint is the installed one, else picks one from the OOF tables and computes its maps (torch, imported
only then).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from spermlib.archs import DEFAULT_ARCH
from spermlib.dashboard.resources import sample_root
from spermlib.dashboard.tables import arch_title
from spermlib.dashboard.triage import NORMAL_LABEL
from spermlib.data.datasets import get_dataset
from spermlib.data.imageio import load_rgb
from spermlib.evaluation.worked_example import pick_example
from spermlib.store.cards import available_folds, checkpoint_path
from spermlib.store.examples import Example, StoredExample, is_current, read_example

__all__ = ["Example", "StoredExample", "current_stored_example", "live_example", "live_maps", "live_maps_stamp",
           "panel_captions", "sample_image", "verdict"]


def current_stored_example(dataset: str, results_dir: str, checkpoints_dir: str) -> StoredExample | None:
    """The example ``spermlib example`` wrote, if its fold checkpoint is still the installed one."""
    stored = read_example(dataset, results_dir)
    return stored if stored is not None and is_current(stored, checkpoints_dir) else None


def live_example(dataset: str, oofs: Mapping[str, pd.DataFrame], samples: list[str]) -> Example | None:
    """The example picked from ``dataset``'s OOF tables among its bundled ``samples``; ``None`` if none is right."""
    oof = oofs.get(DEFAULT_ARCH)
    if oof is None:
        return None
    return pick_example(oof, get_dataset(dataset), DEFAULT_ARCH, samples, NORMAL_LABEL.get(dataset))


def live_maps_stamp(example: Example, checkpoints_dir: Path) -> int | None:
    """The modification time of the example's fold checkpoint (a retrain: new maps); ``None`` if not installed."""
    spec = get_dataset(example.dataset)
    if example.fold not in available_folds(spec, example.arch, checkpoints_dir):
        return None
    return checkpoint_path(spec, example.arch, example.fold, checkpoints_dir).stat().st_mtime_ns


def live_maps(example: Example, checkpoints_dir: str) -> list[np.ndarray]:
    """The image, its Grad-CAM++ and (CBAM) attention overlays by the example's fold model: computed, with torch."""
    from spermlib.evaluation.worked_example import explain_example  # torch: only once a map is computed

    panels, _ = explain_example(example, get_dataset(example.dataset), sample_root(example.dataset),
                                Path(checkpoints_dir))
    return [rgb for _, rgb in panels]


def panel_captions(example: Example, n_panels: int) -> list[str]:
    captions = ["the image", f"Grad-CAM++ for {get_dataset(example.dataset).display(example.pred)}", "CBAM attention"]
    return captions[:n_panels]


def sample_image(example: Example) -> np.ndarray:
    return load_rgb(sample_root(example.dataset) / example.path)


def verdict(example: Example) -> str:
    """What the model said about the example, and why that is an honest test (markdown)."""
    spec = get_dataset(example.dataset)
    return (f"{arch_title(example.arch)} says **{spec.display(example.pred)}** ({example.confidence:.0%}); "
            f"the expert label is {spec.display(example.label)}. It was classified by the fold-{example.fold} "
            "model, which never saw this image in training.")
