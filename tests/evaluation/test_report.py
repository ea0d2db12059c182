"""The README's results block is generated from results/ and must be current."""

from __future__ import annotations

import json

import pytest

from spermlib.data.datasets import PROJECT_ROOT
from spermlib.evaluation.report import (
    README,
    RESULTS_BEGIN,
    RESULTS_END,
    replace_block,
    results_markdown,
    update_readme,
)


def test_readme_results_block_is_current():
    """A number edited by hand, or results committed without `python -m spermlib report`, fail here."""
    assert update_readme(README, results_dir=PROJECT_ROOT / "results", check=True), (
        "README.md's results block differs from results/: run `python -m spermlib report`")


def _metrics(acc: float) -> dict:
    stat = {"mean": acc, "std": 0.02, "pooled": acc, "ci95": [acc - 0.03, acc + 0.03]}
    arch = {"n_images": 216, "accuracy": stat, "macro_f1": stat, "backbone": "tf_efficientnet_lite0",
            "pretrained_source": "offline", "input_size": 160, "tta": False, "training_seconds_total": 600}
    return {"archs": {"effnet_cbam": arch, "effnet": {**arch, "accuracy": {**stat, "mean": 0.5}}},
            "mcnemar": {"effnet vs effnet_cbam": {"n": 216, "a_right_b_wrong": 3, "a_wrong_b_right": 9,
                                                  "p_value": 0.146}},
            "protocol": "5-fold", "full_dataset": True}


def test_results_markdown_shows_the_numbers_of_metrics_json(tmp_path):
    (tmp_path / "hushem").mkdir()
    (tmp_path / "hushem" / "metrics.json").write_text(json.dumps(_metrics(0.912)))
    md = results_markdown(tmp_path)
    assert "| EfficientNet + CBAM | 91.2 ± 2.0 % | 88.2–94.2 % | 0.912 ± 0.020 |" in md
    assert "| EfficientNet | 50.0 ± 2.0 % |" in md
    assert "93.9 %" in md and "0.948" in md  # the paper's HuSHeM numbers beside ours
    assert "Not trained yet: SimpleCNN." in md
    assert "numbers not reached under 5-fold CV: best entry EfficientNet + CBAM, -2.7 points accuracy and -0.036" in md
    assert "9 images only CBAM got right, 3 only the plain model got right; p = 0.15" in md
    assert "### SMIDS\n\nNot evaluated yet." in md
    assert md.index("| EfficientNet |") < md.index("| EfficientNet + CBAM |")  # fixed arch order


def test_results_name_the_fold_models_whose_cards_carry_a_decision_bias(tmp_path):
    (tmp_path / "hushem").mkdir()
    (tmp_path / "hushem" / "metrics.json").write_text(json.dumps(_metrics(0.9)))
    md = results_markdown(tmp_path)
    assert "decision bias" not in md  # no decision_bias.json: no line
    taken = {"effnet_cbam": {"one_view": [], "tta": []}, "effnet": {"one_view": [0], "tta": [1, 3]}}
    (tmp_path / "hushem" / "decision_bias.json").write_text(json.dumps(
        {"rule": "the rule", "archs": {a: {"taken": t, "folds": {}} for a, t in taken.items()}}))
    md = results_markdown(tmp_path)
    assert ("(`python -m spermlib bias`; the rule), taken by EfficientNet: one view fold 0, + TTA folds 1, 3; "
            "EfficientNet + CBAM: one view none, + TTA none.") in md


def test_best_entry_is_the_most_images_right_then_macro_f1(tmp_path):
    """Two entries with the same images right: fold means (a hair apart from unequal fold sizes, in accuracy or in
    macro-F1) must not pick the one with the lower pooled macro-F1."""
    metrics = _metrics(0.9)
    cbam = metrics["archs"]["effnet_cbam"]
    cbam["macro_f1"] = {**cbam["macro_f1"], "mean": 0.9106, "pooled": 0.9108}
    metrics["archs"]["effnet"] = {**cbam, "accuracy": {**cbam["accuracy"], "mean": 0.9 + 1e-6},
                                  "macro_f1": {**cbam["macro_f1"], "mean": 0.9106 + 1e-6, "pooled": 0.9102}}
    (tmp_path / "hushem").mkdir()
    (tmp_path / "hushem" / "metrics.json").write_text(json.dumps(metrics))
    assert "best entry EfficientNet + CBAM, -3.9 points accuracy and -0.037 macro-F1" in results_markdown(tmp_path)
    metrics["archs"]["effnet"]["accuracy"]["pooled"] = 0.9 + 1 / 216  # one image more right wins
    (tmp_path / "hushem" / "metrics.json").write_text(json.dumps(metrics))
    assert "best entry EfficientNet, " in results_markdown(tmp_path)


def test_replace_block_keeps_the_rest_and_needs_markers():
    text = f"intro\n{RESULTS_BEGIN}\nold\n{RESULTS_END}\noutro\n"
    assert replace_block(text, "new\n") == f"intro\n{RESULTS_BEGIN}\nnew\n{RESULTS_END}\noutro\n"
    with pytest.raises(ValueError, match="no results block"):
        replace_block("no markers", "x")


def test_update_readme_rewrites_then_reports_current(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{RESULTS_BEGIN}\nstale\n{RESULTS_END}\n")
    (tmp_path / "res" / "hushem").mkdir(parents=True)
    (tmp_path / "res" / "hushem" / "metrics.json").write_text(json.dumps(_metrics(0.8)))
    assert not update_readme(readme, tmp_path / "res", check=True)
    assert "stale" in readme.read_text()  # --check never writes
    assert not update_readme(readme, tmp_path / "res")
    assert update_readme(readme, tmp_path / "res", check=True)
    assert "80.0 ± 2.0 %" in readme.read_text()


def _faith_entry(cam_mult_gap_std: float) -> dict:
    def stat(mean: float, std: float = 0.1) -> dict:
        return {"mean": mean, "std": std, "ci95": [mean - 0.05, mean + 0.05]}

    return {"n_images": 40,
            "road_combined": {**stat(0.2), "control": stat(0.1), "gap_over_control": stat(0.1)},
            "cam_mult_confidence_change": {**stat(-0.2), "control": stat(-0.2),
                                           "gap_over_control": stat(0.0, cam_mult_gap_std)}}


def test_report_flags_a_cam_mult_that_cannot_tell_maps_apart(tmp_path):
    (tmp_path / "hushem").mkdir()
    (tmp_path / "hushem" / "metrics.json").write_text(json.dumps(_metrics(0.9)))
    faith = {"archs": {"simplecnn": _faith_entry(2e-4), "effnet": _faith_entry(0.05)}, "protocol": "test folds"}
    (tmp_path / "hushem" / "faithfulness.json").write_text(json.dumps(faith))
    md = results_markdown(tmp_path)
    assert "| SimpleCNN | 40 | 0.200 (0.150 to 0.250) |" in md
    assert "CamMult cannot judge the maps of SimpleCNN:" in md  # flagged, and only that arch
    assert "maps of SimpleCNN, EfficientNet" not in md and "maps of EfficientNet" not in md


def test_report_shows_the_robustness_table_of_robustness_json(tmp_path):
    (tmp_path / "hushem").mkdir()
    (tmp_path / "hushem" / "metrics.json").write_text(json.dumps(_metrics(0.9)))
    rows = [{"severity": s, "parameter": q, "accuracy": 0.9 - d, "macro_f1": 0.8, "accuracy_drop": d,
             "macro_f1_drop": 0.1} for s, q, d in ((1, 50, 0.02), (2, 20, 0.081), (3, 8, 0.25))]
    entry = {"n_images": 216, "clean": {"accuracy": 0.9, "macro_f1": 0.9}, "corruptions": {"jpeg": rows},
             "mean_accuracy_drop": [0.02, 0.081, 0.25], "worst_corruption": "jpeg",
             "inference": {"device": "cpu", "precision": "fp32"}}
    rob = {"archs": {"effnet_cbam": entry}, "protocol": "out of fold",
           "corruptions": {"jpeg": {"parameter": "JPEG quality", "severities": [50, 20, 8]}}}
    (tmp_path / "hushem" / "robustness.json").write_text(json.dumps(rob))
    md = results_markdown(tmp_path)
    assert "| none (clean accuracy) | — | 90.0 % |" in md
    assert "| jpeg | JPEG quality: 50 / 20 / 8 | -2.0 / -8.1 / -25.0 |" in md
    assert "| **mean** | | -2.0 / -8.1 / -25.0 |" in md
    assert "Inference: fp32 on cpu." in md
    (tmp_path / "hushem" / "robustness.json").unlink()
    assert "Robustness" not in results_markdown(tmp_path)  # no JSON, no section


def test_training_time_says_where_each_stage_ran():
    from spermlib.evaluation.report import _minutes

    assert _minutes(600, "cpu") == "10 min"
    assert _minutes(600, "cuda") == "10 min (GPU)"
    assert _minutes(600, "cuda+cpu") == "10 min (GPU, then 2 CPU cores)"
    assert _minutes(None) == "—"


def test_temperature_use_names_the_folds_that_use_one():
    from spermlib.evaluation.report import temperature_use

    temps = {str(k): 0.8 for k in range(5)}
    assert temperature_use({"applied": False, "temperatures": temps}) == "not used by predict"
    assert temperature_use({"applied": True, "temperatures": temps}) == "used by predict"  # older results
    assert temperature_use({"applied": True, "applied_folds": [0, 1, 2, 3, 4], "temperatures": temps}) == \
        "used by predict"
    assert temperature_use({"applied": True, "applied_folds": [0, 3], "temperatures": temps}) == \
        "used by predict on folds 0, 3"


@pytest.mark.parametrize(("gap", "decimals", "shown"), [
    (-0.036, 3, "-0.036"), (-0.0003, 3, "-0.0003"), (0.00004, 3, "+0.00004"), (0.0, 3, "+0.000"),
    (-0.04, 1, "-0.04"), (2.7, 1, "+2.7")])
def test_a_gap_to_the_paper_never_rounds_to_a_bare_zero(gap, decimals, shown):
    from spermlib.evaluation.report import _signed_gap

    assert _signed_gap(gap, decimals) == shown
