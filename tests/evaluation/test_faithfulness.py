"""Grad-CAM++ faithfulness on the test folds → faithfulness.json."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from spermlib.data.datasets import PROJECT_ROOT
from spermlib.evaluation.faithfulness import faithfulness_dataset, score_arch, stratified_subset, summarise
from spermlib.inference.explain import gradcam_precision
from spermlib.runtime import precision_policy
from spermlib.store.checkpoints import CheckpointError
from tests.model_fixtures import FOLD_CLASS, TOY, swapped_folds_manifest


def test_stratified_subset_takes_up_to_n_per_class_deterministically():
    test = pd.DataFrame({"path": [f"{c}/{i}.png" for c in "ab" for i in range(10)] + ["c/0.png"],
                         "label": ["a"] * 10 + ["b"] * 10 + ["c"]})
    sub = stratified_subset(test, 3)
    assert sub["label"].value_counts().to_dict() == {"a": 3, "b": 3, "c": 1}
    assert sub["path"].tolist() == stratified_subset(test, 3)["path"].tolist()
    assert len(stratified_subset(test, 0)) == len(test)


@pytest.mark.parametrize("dataset", ["smids", "hushem"])
def test_the_plain_command_scores_the_published_subset(dataset):
    """`spermlib faithfulness --dataset D` must regenerate the committed numbers, not score every image
    (over an hour on SMIDS) and replace the other archs' entries with a subset that does not compare."""
    from spermlib.cli import build_parser

    args = build_parser().parse_args(["faithfulness", "--dataset", dataset])
    published = json.loads((PROJECT_ROOT / "results" / dataset / "faithfulness.json").read_text())
    assert args.per_class == published["per_class"] > 0


def test_summarise_mean_and_ci():
    s = summarise(np.arange(100, dtype=float))
    assert s["mean"] == pytest.approx(49.5)
    assert s["ci95"][0] < 49.5 < s["ci95"][1]


def test_faithfulness_end_to_end_beats_its_control(toy_checkpoints, tmp_path):
    """On the toy task the object decides the class, so real maps must beat a neighbour's map."""
    report = faithfulness_dataset(TOY, toy_checkpoints["data_root"], archs=["simplecnn"], per_class=3,
                                  splits_path=toy_checkpoints["manifest"],
                                  checkpoints_dir=toy_checkpoints["checkpoints"], results_base=tmp_path,
                                  progress=lambda _: None)
    saved = json.loads((tmp_path / "toy" / "faithfulness.json").read_text())
    assert saved == json.loads(json.dumps(report))
    entry = saved["archs"]["simplecnn"]
    assert entry["n_images"] == 2 * 3 * 3  # 2 test folds × 3 classes × 3 images
    cam_mult = entry["cam_mult_confidence_change"]
    assert cam_mult["mean"] > cam_mult["control"]["mean"]
    assert entry["road_combined"]["gap_over_control"]["mean"] > 0
    assert saved["per_class"] == 3 and saved["split_sha256"] == toy_checkpoints["sha"]
    assert "own test fold" in saved["protocol"]
    assert entry["inference"]["prediction_precision"] == precision_policy(torch.device("cpu")).name
    assert entry["inference"]["gradcam_precision"] == gradcam_precision(precision_policy(torch.device("cpu")))


def test_each_fold_model_explains_its_own_test_fold(biased_checkpoints):
    """Fold k's (biased) model predicts FOLD_CLASS[k]: the class explained on fold k's images must be that one."""
    manifest = pd.read_csv(biased_checkpoints["manifest"])
    rows, _ = score_arch(TOY, biased_checkpoints["data_root"], manifest, biased_checkpoints["sha"], "simplecnn",
                         biased_checkpoints["checkpoints"], per_class=1)
    assert rows.groupby("fold")["pred"].unique().map(list).to_dict() == {k: [c] for k, c in FOLD_CLASS.items()}
    in_fold = manifest.set_index("path")["fold"]
    assert (rows["fold"] == rows["path"].map(in_fold)).all()  # only images of the model's own test fold


def test_faithfulness_refuses_checkpoints_of_another_split(toy_checkpoints, tmp_path):
    path = swapped_folds_manifest(toy_checkpoints, tmp_path / "other.csv")
    with pytest.raises(CheckpointError, match="another split"):
        faithfulness_dataset(TOY, toy_checkpoints["data_root"], archs=["simplecnn"], per_class=1, splits_path=path,
                             checkpoints_dir=toy_checkpoints["checkpoints"], results_base=tmp_path)
