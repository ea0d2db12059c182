"""Robustness suite: the corruptions themselves, the out-of-fold protocol and robustness.json."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from spermlib.cli import main
from spermlib.data.corruptions import CORRUPTIONS
from spermlib.data.datasets import get_dataset, resolve_data_root
from spermlib.data.preprocess import load_uint8_batch
from spermlib.data.splits import list_images, manifest_for_root
from spermlib.evaluation.evaluate import oof_predictions
from spermlib.evaluation.robustness import CLEAN, corrupted_predictions, robustness_dataset, robustness_summary
from spermlib.store.results import load_robustness
from tests.model_fixtures import FOLD_CLASS, TOY

N_PASSES = 1 + 3 * len(CORRUPTIONS)  # clean + three severities of each corruption


@pytest.fixture(scope="module")
def sample_batch() -> torch.Tensor:
    """Six bundled HuSHeM sample images at the dataset's input size (real microscope images)."""
    spec = get_dataset("hushem")
    root = resolve_data_root(spec, None)
    return load_uint8_batch(root, list(list_images(spec, root)["path"])[::14][:6], spec.input_size)


def _moved(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().mean())


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_changes_the_image_more_with_severity(sample_batch, name):
    c = CORRUPTIONS[name]
    outs = [c.apply(sample_batch, p) for p in c.severities]
    for out in outs:
        assert out.dtype == torch.uint8 and out.shape == sample_batch.shape
    moved = [_moved(out, sample_batch) for out in outs]
    assert moved[0] > 0.5, f"{name} at its mildest barely changes the image"
    assert moved[0] < moved[1] < moved[2], f"{name}: severities not ordered ({moved})"


@pytest.mark.parametrize("name", [n for n, c in CORRUPTIONS.items() if c.identity is not None])
def test_identity_parameter_leaves_the_image_as_it_is(sample_batch, name):
    c = CORRUPTIONS[name]
    assert torch.equal(c.apply(sample_batch, c.identity), sample_batch)


def test_noise_is_deterministic_and_leaves_the_global_rng_alone(sample_batch):
    noise = CORRUPTIONS["noise"]
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = noise.apply(sample_batch, noise.severities[1])
    assert torch.equal(torch.rand(1), expected_next)
    assert torch.equal(a, noise.apply(sample_batch, noise.severities[1]))


def test_stronger_jpeg_loses_more_fine_detail(sample_batch):
    """JPEG has no identity; quality 95 must stay far closer to the original than the strongest severity."""
    jpeg = CORRUPTIONS["jpeg"]
    assert _moved(jpeg.apply(sample_batch, 95), sample_batch) < 0.5 * _moved(
        jpeg.apply(sample_batch, jpeg.severities[-1]), sample_batch)


def _toy_manifest(ckpts: dict):
    return manifest_for_root(TOY, ckpts["data_root"], ckpts["manifest"])


def test_every_image_is_scored_by_its_own_fold_model(biased_checkpoints):
    """Each biased fold model predicts its own class whatever the image, corrupted or not: any image
    scored by another fold's model would show that model's class."""
    manifest, sha = _toy_manifest(biased_checkpoints)
    preds, run = corrupted_predictions(TOY, biased_checkpoints["data_root"], manifest, sha, "simplecnn",
                                       biased_checkpoints["checkpoints"], device="cpu")
    assert len(preds) == N_PASSES * len(manifest)
    assert (preds["pred"] == preds["fold"].map(FOLD_CLASS)).all()
    assert (preds.groupby("path").size() == N_PASSES).all()
    assert run["device"] == "cpu" and run["precision"]


def test_clean_pass_matches_evaluate(toy_checkpoints):
    manifest, sha = _toy_manifest(toy_checkpoints)
    args = (TOY, toy_checkpoints["data_root"], manifest, sha, "simplecnn", toy_checkpoints["checkpoints"])
    preds, _ = corrupted_predictions(*args, device="cpu", corruptions={})
    oof, _ = oof_predictions(*args, device="cpu")
    clean = preds[preds["corruption"] == CLEAN].sort_values("path", ignore_index=True)
    assert list(clean["pred"]) == list(oof["pred"])


def test_with_tta_the_clean_pass_matches_evaluate_tta_and_the_one_view_entry_is_kept(toy_checkpoints, tmp_path):
    manifest, sha = _toy_manifest(toy_checkpoints)
    args = (TOY, toy_checkpoints["data_root"], manifest, sha, "simplecnn", toy_checkpoints["checkpoints"])
    preds, run = corrupted_predictions(*args, device="cpu", corruptions={}, tta=True)
    oof, _ = oof_predictions(*args, device="cpu", tta=True)
    assert run["tta"] and list(preds.sort_values("path", ignore_index=True)["pred"]) == list(oof["pred"])
    one_view, _ = oof_predictions(*args, device="cpu")
    probs = [c for c in oof if c.startswith("prob_")]
    assert not oof[probs].equals(one_view[probs])  # the TTA pass is not one view
    kw = dict(archs=["simplecnn"], splits_path=toy_checkpoints["manifest"], device="cpu",
              checkpoints_dir=toy_checkpoints["checkpoints"], results_base=tmp_path, folds=[0])
    robustness_dataset(TOY, toy_checkpoints["data_root"], **kw)
    report = robustness_dataset(TOY, toy_checkpoints["data_root"], tta=True, **kw)
    assert set(report["archs"]) == {"simplecnn", "simplecnn+tta"}
    assert report["archs"]["simplecnn+tta"]["inference"]["tta"] and not report["archs"]["simplecnn"]["inference"]["tta"]


def test_summary_drop_is_clean_minus_corrupted():
    rows = []
    for name, severity, right in ((CLEAN, 0, 4), ("blur", 1, 3), ("blur", 2, 2), ("blur", 3, 0)):
        for i in range(4):
            rows.append({"corruption": name, "severity": severity, "label": "a" if i % 2 else "b",
                         "pred": ("a" if i % 2 else "b") if i < right else "c"})
    s = robustness_summary(pd.DataFrame(rows), {"blur": CORRUPTIONS["blur"]})
    assert s["clean"]["accuracy"] == 1.0 and s["n_images"] == 4
    assert [r["accuracy_drop"] for r in s["corruptions"]["blur"]] == [0.25, 0.5, 1.0]
    assert s["mean_accuracy_drop"] == [0.25, 0.5, 1.0] and s["worst_corruption"] == "blur"


def test_robustness_json_schema(toy_checkpoints, tmp_path):
    report = robustness_dataset(TOY, toy_checkpoints["data_root"], archs=["simplecnn"],
                                splits_path=toy_checkpoints["manifest"], device="cpu",
                                checkpoints_dir=toy_checkpoints["checkpoints"], results_base=tmp_path)
    saved = load_robustness(TOY, tmp_path)
    assert saved == report
    assert saved["split_sha256"] == toy_checkpoints["sha"] and "out of fold" in saved["protocol"]
    assert set(saved["corruptions"]) == set(CORRUPTIONS)
    entry = saved["archs"]["simplecnn"]
    assert entry["n_images"] == len(pd.read_csv(toy_checkpoints["manifest"]))
    assert {"device", "precision"} <= set(entry["inference"])
    for name, rows in entry["corruptions"].items():
        assert [r["severity"] for r in rows] == [1, 2, 3]
        assert [r["parameter"] for r in rows] == list(CORRUPTIONS[name].severities)
        for r in rows:
            assert r["accuracy_drop"] == pytest.approx(entry["clean"]["accuracy"] - r["accuracy"])
            assert r["macro_f1_drop"] == pytest.approx(entry["clean"]["macro_f1"] - r["macro_f1"])
    assert np.mean([rows[1]["accuracy_drop"] for rows in entry["corruptions"].values()]) == pytest.approx(
        entry["mean_accuracy_drop"][1])
    assert saved["folds"] == "all"


def test_robustness_on_some_folds_scores_only_their_test_images(toy_checkpoints, tmp_path):
    manifest = pd.read_csv(toy_checkpoints["manifest"])
    report = robustness_dataset(TOY, toy_checkpoints["data_root"], archs=["simplecnn"],
                                splits_path=toy_checkpoints["manifest"], device="cpu", folds=[1],
                                checkpoints_dir=toy_checkpoints["checkpoints"], results_base=tmp_path)
    assert report["folds"] == [1] and report["split_sha256"] == toy_checkpoints["sha"]
    assert report["archs"]["simplecnn"]["n_images"] == int((manifest["fold"] == 1).sum())


def test_cli_on_the_bundled_sample_with_the_shipped_simplecnn(tmp_path, capsys):
    rc = main(["robustness", "--dataset", "hushem", "--arch", "simplecnn", "--device", "cpu",
               "--results", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0 and "hushem/simplecnn: clean accuracy" in out and "worst at strong severity:" in out
    saved = load_robustness("hushem", tmp_path)
    assert saved["full_dataset"] is False and saved["archs"]["simplecnn"]["n_images"] == 80


def test_cli_without_checkpoints_is_one_clear_error(tmp_path, capsys):
    assert main(["robustness", "--dataset", "hushem", "--checkpoints", str(tmp_path)]) == 2
    assert "no checkpoints for hushem" in capsys.readouterr().err


def test_training_corruptions_are_seeded_and_cover_the_suite(sample_batch):
    from spermlib.data.corruptions import TRAINING_FAMILIES, _random_parameter, random_corruptions

    draw = lambda seed, p: random_corruptions(sample_batch, torch.Generator().manual_seed(seed), p)  # noqa: E731
    assert torch.equal(draw(0, 0.0), sample_batch)  # p = 0 is off
    assert torch.equal(draw(3, 1.0), draw(3, 1.0)) and not torch.equal(draw(3, 1.0), draw(4, 1.0))
    hit = draw(3, 1.0)
    assert hit.dtype == torch.uint8 and hit.shape == sample_batch.shape
    assert all(_moved(hit[i], sample_batch[i]) > 0 for i in range(len(hit)))
    gen = torch.Generator().manual_seed(0)
    for name in TRAINING_FAMILIES:  # the suite's strongest severity lies inside the drawn range
        params = np.abs([_random_parameter(name, gen) for _ in range(400)])
        c = CORRUPTIONS[name]
        strongest, ident = abs(c.severities[-1]), (95 if c.identity is None else abs(c.identity))
        lo, hi = sorted((strongest, ident))
        assert params.min() <= lo + 0.1 * (hi - lo) and params.max() >= hi - 0.1 * (hi - lo), name


def test_nuisance_views_are_seeded_stay_within_the_mild_reach_and_cover_the_whole_suite(sample_batch):
    from spermlib.data.corruptions import _random_parameter, nuisance_views

    views = lambda seed: nuisance_views(sample_batch, torch.Generator().manual_seed(seed), 2, 1.5)  # noqa: E731
    assert views(0).shape == (2 * len(sample_batch), *sample_batch.shape[1:]) and views(0).dtype == torch.uint8
    assert torch.equal(views(0), views(0)) and not torch.equal(views(0), views(1))
    gen = torch.Generator().manual_seed(0)
    for name, c in CORRUPTIONS.items():  # never past 1.5x the mild severity, and reaching close to it
        params = np.abs([_random_parameter(name, gen, severity=0, reach=1.5) for _ in range(400)])
        ident = 95 if c.identity is None else abs(c.identity)
        end = c.severities[0] if c.identity is None else abs(ident + 1.5 * (c.severities[0] - ident))
        lo, hi = sorted((ident, end))
        assert params.min() >= lo - 1e-9 and params.max() <= hi + 1e-9, name
        assert params.min() <= lo + 0.1 * (hi - lo) and params.max() >= hi - 0.1 * (hi - lo), name


def test_nested_choice_needs_more_robustness_and_at_most_one_image_of_clean_accuracy():
    from spermlib.evaluation.robustness import choose_per_fold

    base = {k: {"n_inner_val": 25, "clean_accuracy": 0.92, "corrupted_accuracy": 0.70} for k in range(4)}
    cand = {0: {"n_inner_val": 25, "clean_accuracy": 0.88, "corrupted_accuracy": 0.85},  # one image less: wins
            1: {"n_inner_val": 25, "clean_accuracy": 0.84, "corrupted_accuracy": 0.90},  # two images less
            2: {"n_inner_val": 25, "clean_accuracy": 0.96, "corrupted_accuracy": 0.70},  # not more robust
            3: {"n_inner_val": 25, "clean_accuracy": 0.92, "corrupted_accuracy": 0.71}}
    assert choose_per_fold(base, cand) == [0, 3]


def test_a_more_accurate_recipe_replaces_a_fold_model_only_if_strictly_better_clean_and_no_less_robust():
    from spermlib.evaluation.robustness import improves_per_fold

    def s(clean, corrupted):
        return {"n_inner_val": 342, "clean_accuracy": clean, "corrupted_accuracy": corrupted}

    current = {k: s(0.90, 0.88) for k in range(5)}
    candidate = {0: s(0.91, 0.88),   # better clean, as robust: replaces
                 1: s(0.90, 0.95),   # a clean tie: stays, however robust
                 2: s(0.95, 0.87),   # less robust: stays
                 3: s(0.89, 0.99),   # worse clean: stays
                 4: s(0.93, 0.90)}   # better on both: replaces
    assert improves_per_fold(current, candidate) == [0, 4]
    assert improves_per_fold(current, {7: s(1.0, 1.0)}) == []


def test_pick_per_fold_takes_the_most_robust_winner_and_breaks_ties_by_order():
    from spermlib.evaluation.robustness import pick_per_fold

    def s(clean, corrupted):
        return {"n_inner_val": 25, "clean_accuracy": clean, "corrupted_accuracy": corrupted}

    base = {0: s(0.92, 0.70), 1: s(0.92, 0.70), 2: s(0.92, 0.70)}
    near = {0: s(0.92, 0.80), 1: s(0.92, 0.75), 2: s(0.80, 0.95)}  # fold 2: three images less clean, loses
    far = {0: s(0.88, 0.90), 1: s(0.92, 0.75), 2: s(0.84, 0.99)}    # fold 0 more robust; fold 1 a tie
    assert pick_per_fold(base, {"near": near, "far": far}) == {0: "far", 1: "near"}
    assert pick_per_fold(base, {"far": far, "near": near}) == {0: "far", 1: "far"}
    assert pick_per_fold(base, {"far": {2: far[2]}}) == {}


def test_tune_robustness_scores_inner_validation_only(toy_checkpoints, tmp_path, monkeypatch):
    """``tune --robustness`` adds per-fold inner-validation robustness and a per-fold choice; the test folds'
    images are never decoded for it."""
    import json

    import spermlib.evaluation.evaluate as ev  # inner_validation_sets: where the inner validation is read
    import spermlib.evaluation.robustness as rob
    from spermlib.training.tuning import compare_configs, record_comparison

    manifest = pd.read_csv(toy_checkpoints["manifest"])
    decoded = []  # the paths of each decoding call, in fold order
    real = ev.load_uint8_batch
    monkeypatch.setattr(ev, "load_uint8_batch",
                        lambda root, paths, size: decoded.append(paths) or real(root, paths, size))
    real_parts = ev.fold_parts  # the toy set has 5 images a class outside a fold: too few for 1/0.15 inner splits
    monkeypatch.setattr(ev, "fold_parts", lambda m, k, val_fraction: real_parts(m, k, val_fraction=0.5))
    runs = {"shipped": toy_checkpoints["checkpoints"], "again": toy_checkpoints["checkpoints"],
            "and_again": toy_checkpoints["checkpoints"]}
    comparison = compare_configs(TOY, "simplecnn", runs)
    out = rob.add_inner_robustness(comparison, TOY, toy_checkpoints["data_root"], runs, toy_checkpoints["manifest"])
    assert "chosen on folds []" in out  # the same checkpoints are not more robust than themselves
    assert "picked per fold (pick_per_fold): none: the baseline stays" in out
    folds = dict(zip(manifest["path"], manifest["fold"]))
    assert len(decoded) == 6  # three runs × two folds
    for k, paths in zip([0, 1, 0, 1, 0, 1], decoded):  # fold k's pass decodes only images of its training part
        assert paths and all(folds[p] != k for p in paths)
    arch = json.loads(record_comparison(comparison, tmp_path / "tuning.json").read_text())["archs"]["simplecnn"]
    assert "robustness_protocol" in arch and arch["configs"][1]["chosen_over_baseline_folds"] == []
    assert arch["picked_per_fold"] == {}  # recorded with several candidates, even when none wins
    assert set(arch["configs"][1]["inner_val_robustness"]) == {"0", "1"}


def test_a_rerun_reads_unchanged_folds_back_and_computes_a_changed_fold_again(toy_checkpoints, tmp_path):
    """Stored per-fold predictions are what a rerun uses (a tampered store shows in its output), only while the
    fold's card is the same: editing fold 1's card makes fold 1 be computed again, fold 0 still comes from the store;
    ``reuse=False`` computes both."""
    import json
    import shutil

    from spermlib.store.cards import checkpoint_path

    ckpts = tmp_path / "checkpoints"
    shutil.copytree(toy_checkpoints["checkpoints"], ckpts)
    manifest, sha = _toy_manifest(toy_checkpoints)
    store = tmp_path / "results"

    def run(**kw):
        return corrupted_predictions(TOY, toy_checkpoints["data_root"], manifest, sha, "simplecnn", ckpts,
                                     device="cpu", corruptions={"blur": CORRUPTIONS["blur"]}, fold_store=store, **kw)

    first, info = run()
    assert info["folds_from_store"] == []
    again, info = run()
    assert info["folds_from_store"] == [0, 1] and again.equals(first)
    stored = store / "robustness_folds" / "simplecnn" / "fold0.csv.gz"
    wide = pd.read_csv(stored, index_col="path")
    other = [c for c in TOY.class_dirs if c != first[first["fold"] == 0]["pred"].iloc[0]][0]
    (wide * 0 + list(TOY.class_dirs).index(other)).to_csv(stored, compression="gzip")  # every pass says `other`
    tampered, _ = run()
    assert (tampered[tampered["fold"] == 0]["pred"] == other).all()
    assert tampered[tampered["fold"] == 1].equals(first[first["fold"] == 1])
    card = checkpoint_path(TOY, "simplecnn", 1, ckpts).with_suffix(".json")
    card.write_text(json.dumps({**json.loads(card.read_text()), "note": "edited"}))
    _, info = run()
    assert info["folds_from_store"] == [0]
    fresh, info = run(reuse=False)
    assert info["folds_from_store"] == [] and fresh.equals(first)
