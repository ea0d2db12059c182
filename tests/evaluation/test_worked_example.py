"""Picking and explaining the Overview's worked example."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from spermlib.data.datasets import SAMPLE_DATA_ROOT, get_dataset
from spermlib.data.imageio import load_rgb
from spermlib.evaluation.worked_example import pick_example, write_worked_example
from spermlib.store.cards import available_folds
from spermlib.store.examples import is_current, read_example
from spermlib.store.paths import default_results_dir
from spermlib.store.results import oof_path, prob_column

SMIDS = get_dataset("smids")
HUSHEM = get_dataset("hushem")


def _oof(rows):
    df = pd.DataFrame(rows, columns=["path", "label", "pred", "fold", "p"])
    for c in SMIDS.class_dirs:
        df[prob_column(c)] = [p if pred == c else (1 - p) / 2 for p, pred in zip(df["p"], df["pred"])]
    return df.drop(columns="p")


def test_worked_example_is_a_confident_correct_sample_of_the_preferred_class():
    oof = _oof([
        ("Normal_Sperm/a.bmp", "Normal_Sperm", "Normal_Sperm", 1, 0.80),
        ("Normal_Sperm/b.bmp", "Normal_Sperm", "Normal_Sperm", 3, 0.95),
        ("Normal_Sperm/c.bmp", "Normal_Sperm", "Abnormal_Sperm", 0, 0.99),  # wrong: never the example
        ("Abnormal_Sperm/d.bmp", "Abnormal_Sperm", "Abnormal_Sperm", 2, 0.99),
        ("Normal_Sperm/not_bundled.bmp", "Normal_Sperm", "Normal_Sperm", 4, 0.999),
    ])
    bundled = ["Normal_Sperm/a.bmp", "Normal_Sperm/b.bmp", "Normal_Sperm/c.bmp", "Abnormal_Sperm/d.bmp"]
    example = pick_example(oof, SMIDS, "effnet", bundled, "Normal_Sperm")
    assert (example.path, example.fold, example.pred, example.arch) == ("Normal_Sperm/b.bmp", 3, "Normal_Sperm",
                                                                         "effnet")
    assert example.confidence == pytest.approx(0.95)
    # no preference: the most confident correct one; no correct normal sample: another class
    assert pick_example(oof, SMIDS, "effnet", bundled).path == "Abnormal_Sperm/d.bmp"
    assert pick_example(oof, SMIDS, "effnet", ["Normal_Sperm/c.bmp", "Abnormal_Sperm/d.bmp"],
                        "Normal_Sperm").path == "Abnormal_Sperm/d.bmp"
    assert pick_example(oof, SMIDS, "effnet", ["Normal_Sperm/c.bmp"], "Normal_Sperm") is None


def test_stored_example_comes_from_the_fold_model_that_never_saw_the_image(tmp_path):
    committed = oof_path(default_results_dir() / "hushem", "effnet_cbam")
    if not committed.is_file() or not available_folds(HUSHEM, "effnet_cbam"):
        pytest.skip("the repository's HuSHeM checkpoints and results are not installed")
    (tmp_path / "hushem").mkdir()
    shutil.copy(committed, oof_path(tmp_path / "hushem", "effnet_cbam"))
    example = write_worked_example(HUSHEM, "effnet_cbam", "01_Normal", results_dir=tmp_path)
    oof = pd.read_csv(committed).set_index("path")
    assert example.label == "01_Normal" and oof.loc[example.path, "fold"] == example.fold
    stored = read_example("hushem", tmp_path)
    assert stored.example == example and is_current(stored)
    image, gradcam, cbam = stored.images()
    assert [c for _, c in stored.panels] == ["the image", "Grad-CAM++ for Normal", "CBAM attention"]
    assert image.shape == gradcam.shape == cbam.shape == (224, 224, 3)
    assert not np.array_equal(image, gradcam) and not np.array_equal(gradcam, cbam)  # real maps over the image
    source = load_rgb(SAMPLE_DATA_ROOT / HUSHEM.folder / example.path)
    assert abs(float(image.mean()) - float(np.asarray(source).mean())) < 8  # the same picture, resized
