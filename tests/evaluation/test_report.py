"""The generated blocks (README's headline table, docs/results.md, docs/models.md) come from results/ and
checkpoints/ and must be current."""

from __future__ import annotations

import json

import pytest

from spermlib.data.datasets import PROJECT_ROOT
from spermlib.evaluation.report import (
    README,
    RESULTS_BEGIN,
    RESULTS_END,
    generated_blocks,
    headline_markdown,
    markers,
    models_markdown,
    replace_block,
    results_markdown,
    update_generated,
)

README_MAX_LINES = 300
COMMITTED = generated_blocks(PROJECT_ROOT / "results", PROJECT_ROOT / "checkpoints")


@pytest.mark.parametrize(("path", "name", "content"), COMMITTED, ids=[f"{p.name}:{n}" for p, n, _ in COMMITTED])
def test_every_generated_block_is_current(path, name, content):
    """A number edited by hand, or results or checkpoints committed without `spermlib report`, fail here."""
    text = path.read_text()
    assert replace_block(text, content, name, where=path.name) == text, (
        f"{path.relative_to(PROJECT_ROOT)}'s {name} block differs from results/ and checkpoints/: "
        "run `spermlib report`")


def test_readme_is_a_front_door_not_a_manual():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_the_committed_headline_table_leads_with_the_default_inference():
    begin, end = markers("headline")
    block = README.read_text().split(begin, 1)[1].split(end, 1)[0]
    header = block.strip().splitlines()[0]
    assert "8-view TTA (default inference)" in header and "one view" in header
    assert "*paper, EfficientNet + CBAM" in block and "SMIDS" in block and "HuSHeM" in block


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
    assert ("(`spermlib bias`; the rule), taken by EfficientNet: one view fold 0, + TTA folds 1, 3; "
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


def test_headline_marks_the_default_inference_and_puts_one_view_beside_it(tmp_path):
    metrics = _metrics(0.87)
    cbam = metrics["archs"]["effnet_cbam"]
    metrics["archs"]["effnet_cbam+tta"] = {**cbam, "tta": True,
                                          "accuracy": {**cbam["accuracy"], "mean": 0.907, "ci95": [0.866, 0.944]}}
    (tmp_path / "hushem").mkdir()
    (tmp_path / "hushem" / "metrics.json").write_text(json.dumps(metrics))
    md = headline_markdown(tmp_path)
    assert "| accuracy, **8-view TTA (default inference)** |" in md.splitlines()[0]
    # CBAM: the TTA figure leads, the one-view figure of the same models is beside it
    assert "| HuSHeM | EfficientNet + CBAM | 90.7 % (86.6–94.4 %) | 0.870 (0.840–0.900) | 87.0 % (84.0–90.0 %) ·" in md
    # the plain model has no TTA entry: its one-view figure is the default, and says so
    assert "| HuSHeM | EfficientNet | 50.0 % (84.0–90.0 %) (one view: TTA not scored) |" in md
    assert "| HuSHeM | *paper, EfficientNet + CBAM (single hold-out split)* | 93.9 % | 0.948 | — |" in md
    assert "| SMIDS | not evaluated yet |" in md
    assert "5-fold cross-validation" in md


def _card(fold: int, **extra) -> dict:
    return {"arch": "effnet", "backbone": "tf_efficientnet_lite0", "pretrained_source": "offline weights",
            "classes": ["01_Normal", "02_Tapered"], "display_names": ["Normal", "Tapered"], "input_size": 224,
            "mean": [0.5] * 3, "std": [0.5] * 3, "dataset": "hushem", "fold": fold, "split_manifest": "splits/h.csv",
            "split_sha256": "ab" * 32, "recipe": {"input_size": 0, "lr": 3e-4, "epochs": 4 + fold},
            "epochs_run": 4, "best_epoch": 3, "inner_val": {"accuracy": 0.96, "macro_f1": 0.955},
            "training_seconds": 120, "device": "cpu", "bf16": True, "torch_threads": 2,
            "weights_sha256": f"{fold}" * 64, **extra}


def test_model_cards_come_from_the_fold_cards_and_metrics(tmp_path):
    ck = tmp_path / "ck" / "hushem" / "effnet"
    ck.mkdir(parents=True)
    average = {"alpha_clean": 0.9, "clean_weights_sha256": "c" * 64, "stage_weights_sha256": "d" * 64}
    (ck / "fold0.json").write_text(json.dumps(_card(0, temperature=0.8, decision_bias={"tta": [0, 0.1]})))
    (ck / "fold1.json").write_text(json.dumps(_card(1, weight_average=average, init_weights_sha256="c" * 64,
                                                    init_training_seconds=600, init_device="cuda")))
    (tmp_path / "res" / "hushem").mkdir(parents=True)
    (tmp_path / "res" / "hushem" / "metrics.json").write_text(json.dumps(_metrics(0.9)))
    md = models_markdown(tmp_path / "ck", tmp_path / "res")
    assert "### HuSHeM · EfficientNet\n" in md and "SMIDS" not in md  # only what has checkpoints
    assert "| weight source | offline weights |" in md
    assert "| cross-validated, one view | accuracy 50.0 % (87.0–93.0 %)" in md
    assert "| recipe, every fold | `lr` 0.0003 |" in md  # shared fields once; the input size is the card's
    assert ("| 0 | 224 px | `epochs` 4 | one stage, from the weight source | 4 (3) | 2.0 min, CPU (2 threads), "
            "bf16 autocast | 96.0 % / 0.955 | 0.800 | TTA | `000000000000` |") in md
    assert ("| 1 | 224 px | `epochs` 5 | WiSE-FT average, 0.9 × clean `cccccccccccc` + 0.1 × stage "
            "`dddddddddddd` |") in md
    assert "first stage 10.0 min, GPU" in md


def test_replace_block_keeps_the_rest_and_needs_markers():
    text = f"intro\n{RESULTS_BEGIN}\nold\n{RESULTS_END}\noutro\n"
    assert replace_block(text, "new\n") == f"intro\n{RESULTS_BEGIN}\nnew\n{RESULTS_END}\noutro\n"
    with pytest.raises(ValueError, match="README.md has no results block"):
        replace_block("no markers", "x")
    with pytest.raises(ValueError, match="models.md has no models block"):
        replace_block(text, "x", "models", where="models.md")


def test_update_generated_rewrites_every_stale_file_then_reports_current(tmp_path):
    (tmp_path / "docs").mkdir()
    for path, name in ((tmp_path / "README.md", "headline"), (tmp_path / "docs" / "results.md", "results"),
                       (tmp_path / "docs" / "models.md", "models")):
        begin, end = markers(name)
        path.write_text(f"# x\n{begin}\nstale\n{end}\n")
    (tmp_path / "res" / "hushem").mkdir(parents=True)
    (tmp_path / "res" / "hushem" / "metrics.json").write_text(json.dumps(_metrics(0.8)))
    (tmp_path / "ck").mkdir()
    kw = {"results_dir": tmp_path / "res", "checkpoints_dir": tmp_path / "ck", "root": tmp_path}
    stale = update_generated(check=True, **kw)
    assert sorted(p.name for p in stale) == ["README.md", "models.md", "results.md"]
    assert "stale" in (tmp_path / "README.md").read_text()  # --check never writes
    assert len(update_generated(**kw)) == 3
    assert update_generated(check=True, **kw) == []
    assert "80.0 ± 2.0 %" in (tmp_path / "docs" / "results.md").read_text()
    assert "80.0 % (77.0–83.0 %)" in (tmp_path / "README.md").read_text()


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
