"""``spermlib ood``: detectors fitted per fold model and stored beside it, ood.json, and what
``predict`` makes of them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from spermlib.calibration import fit as calibration_fit
from spermlib.calibration.detectors import METHODS
from spermlib.calibration.store import detector_path
from spermlib.cli import main
from spermlib.data.datasets import SAMPLE_DATA_ROOT, get_dataset
from spermlib.data.splits import write_manifest
from spermlib.errors import SpermlibError
from spermlib.evaluation import ood as ood_eval
from spermlib.inference.predict import Predictor
from spermlib.store.checkpoints import checkpoint_path, load_checkpoint, read_card, save_checkpoint
from spermlib.store.results import load_ood
from tests.model_fixtures import TOY, toy_folder


@pytest.fixture(scope="module")
def toy_ood(toy_checkpoints, tmp_path_factory) -> dict:
    """The toy models re-saved for a larger toy folder (the inner-validation split needs ≥ 7 images per class
    outside a test fold) and ``ood`` run on them (fitting writes detectors and card temperatures)."""
    base = tmp_path_factory.mktemp("ood")
    data_root, manifest = base / "data", base / "toy.csv"
    sha = write_manifest(toy_folder(data_root, n_per_class=16, seed=5), manifest)
    ckpts = base / "checkpoints"
    for fold in (0, 1):
        model, card = load_checkpoint(checkpoint_path(TOY, "simplecnn", fold, toy_checkpoints["checkpoints"]))
        card = {k: v for k, v in card.items() if k not in ("card_version", "weights_sha256")}
        save_checkpoint(model, {**card, "split_sha256": sha}, checkpoint_path(TOY, "simplecnn", fold, ckpts))
    report = ood_eval.ood_dataset(TOY, data_root, ["simplecnn"], manifest, "cpu", ckpts, base / "results")
    return {"data_root": data_root, "manifest": manifest, "checkpoints": ckpts, "report": report,
            "results": base / "results"}


def test_ood_json_has_every_set_the_protocol_and_the_comparison(toy_ood):
    report = load_ood(TOY, toy_ood["results"])
    assert report == json.loads(json.dumps(toy_ood["report"]))
    entry = report["archs"]["simplecnn"]
    assert set(entry["selection"]["candidates"]) == set(METHODS)
    assert entry["detector"] == entry["selection"]["chosen"]
    assert entry["test_folds"]["n_images"] == 48  # every usable toy image, once, by its own fold model
    assert entry["natural_photographs"]["n_images"] == 5 * len(ood_eval.NATURAL_PHOTOS)
    assert set(entry["shifts"]) == set(ood_eval.SHIFTS)
    for name in ("other_dataset", "natural_photographs"):
        assert 0.0 <= entry[name]["auroc"] <= 1.0 and 0.0 <= entry[name]["flagged"] <= 1.0
    assert "no test fold" in report["protocol"] and report["targets"] == ood_eval.TARGETS
    assert entry["refitted"] is True
    assert set(entry["mild_corruptions"]["flagged"]) == set(ood_eval.CORRUPTIONS)
    assert entry["mild_corruptions"]["worst"] in ood_eval.CORRUPTIONS


def test_each_fold_chooses_on_its_own_inner_validation_and_lets_mild_corruptions_by(toy_ood):
    entry = toy_ood["report"]["archs"]["simplecnn"]
    selection = entry["selection"]
    assert set(selection["chosen_per_fold"]) == set(selection["per_fold"]) == {"0", "1"}
    for fold, scores in selection["per_fold"].items():
        mild = {m: c["inner_val_mild_corruptions_flagged"] for m, c in scores.items()}
        tolerant = [m for m, rate in mild.items() if rate <= calibration_fit.MAX_MILD_FLAGGED]
        chosen = selection["chosen_per_fold"][fold]
        if tolerant:
            assert chosen == max(tolerant, key=lambda m: scores[m]["criterion"])
        else:
            assert mild[chosen] == min(mild.values())
        assert entry["detectors_per_fold"][fold] == chosen  # what is stored is what the fold chose


def test_the_choice_rule_prefers_a_tolerant_method_over_a_sharper_one():
    scores = {"sharp": {"criterion": 0.99, "inner_val_mild_corruptions_flagged": 0.9},
              "tolerant": {"criterion": 0.95, "inner_val_mild_corruptions_flagged": 0.1},
              "weak": {"criterion": 0.80, "inner_val_mild_corruptions_flagged": 0.05}}
    assert calibration_fit.choose_method(scores) == "tolerant"
    assert calibration_fit.choose_method({k: v for k, v in scores.items() if k == "sharp"}) == "sharp"
    strict = {k: {**v, "inner_val_mild_corruptions_flagged": 0.5 + v["criterion"] / 10} for k, v in scores.items()}
    assert calibration_fit.choose_method(strict) == "weak"  # none tolerant: the one that flags fewest


def test_detectors_and_temperatures_are_stored_beside_the_checkpoints(toy_ood):
    entry = toy_ood["report"]["archs"]["simplecnn"]
    for fold in (0, 1):
        path = detector_path(TOY, "simplecnn", fold, toy_ood["checkpoints"])
        meta = json.loads(path.with_suffix(".json").read_text())
        card = read_card(checkpoint_path(TOY, "simplecnn", fold, toy_ood["checkpoints"]))
        assert meta["method"] == entry["detectors_per_fold"][str(fold)]
        assert meta["weights_sha256"] == card["weights_sha256"]
        assert f"fold {fold}" in meta["fitted_on"] and "nuisance views" in meta["threshold_on"]
        calib = entry["calibration"]
        assert ("temperature" in card) == (fold in calib["applied_folds"])
        if fold in calib["applied_folds"]:
            assert card["temperature"] == pytest.approx(calib["temperatures"][str(fold)])
    assert calib["applied"] == bool(calib["applied_folds"])


def test_a_second_run_reuses_the_stored_detectors_unless_refit(toy_ood):
    args = (TOY, toy_ood["data_root"], ["simplecnn"], toy_ood["manifest"], "cpu", toy_ood["checkpoints"],
            toy_ood["results"])
    again = ood_eval.ood_dataset(*args)["archs"]["simplecnn"]
    assert again["refitted"] is False
    assert again["test_folds"] == toy_ood["report"]["archs"]["simplecnn"]["test_folds"]
    assert ood_eval.ood_dataset(*args, refit=True)["archs"]["simplecnn"]["refitted"] is True


def test_predict_reports_the_domain_of_every_image_and_null_for_failures(toy_ood, tmp_path):
    import skimage.data
    from PIL import Image

    photo = tmp_path / "coffee.png"
    Image.fromarray(skimage.data.coffee()).save(photo)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    toy_image = next(toy_ood["data_root"].glob("disc/*.png"))
    predictor = Predictor.from_checkpoints(TOY, "simplecnn", checkpoints_dir=toy_ood["checkpoints"], device="cpu")
    rows = [r.to_dict() for r in predictor.predict_files([toy_image, photo, bad])]
    for row in rows:
        assert {"in_domain", "domain_score"} <= set(row)
    assert isinstance(rows[0]["in_domain"], bool) and isinstance(rows[0]["domain_score"], float)
    assert rows[1]["domain_score"] < rows[0]["domain_score"]  # a coffee cup is less typical than a toy disc
    assert rows[2]["in_domain"] is None and rows[2]["domain_score"] is None and rows[2]["error"]


def test_single_fold_and_ensemble_agree_on_the_rule(toy_ood):
    predictor = Predictor.from_checkpoints(TOY, "simplecnn", checkpoints_dir=toy_ood["checkpoints"], device="cpu")
    u8 = predictor.preprocess([np.full((48, 48, 3), 90, np.uint8), np.zeros((48, 48, 3), np.uint8)])
    _, scores = predictor._score(u8)
    preds = predictor._to_predictions(*predictor._score(u8), ["a", "b"])
    assert [p.domain_score for p in preds] == pytest.approx(scores.mean(0).tolist())
    one = predictor.subset([1])._to_predictions(*predictor.subset([1])._score(u8), ["a", "b"])
    assert [p.domain_score for p in one] == pytest.approx(scores[1].tolist())


def test_checkpoints_without_detectors_still_predict_with_null_domain(toy_checkpoints):
    predictor = Predictor.from_checkpoints(TOY, "simplecnn", checkpoints_dir=toy_checkpoints["checkpoints"],
                                           device="cpu")
    (pred,) = predictor.predict_files([next(toy_checkpoints["data_root"].glob("disc/*.png"))])
    assert pred.label is not None and pred.in_domain is None and pred.domain_score is None


def test_a_subset_never_replaces_the_shipped_detectors(toy_checkpoints, monkeypatch, tmp_path):
    """Fitting on the bundled sample into the project's own checkpoints/ is refused (before any forward)."""
    monkeypatch.setattr(ood_eval, "SHIPPED_CHECKPOINTS", toy_checkpoints["checkpoints"])
    monkeypatch.setattr(ood_eval, "is_full_dataset", lambda root: False)
    with pytest.raises(SpermlibError, match="full data"):
        ood_eval.ood_dataset(TOY, toy_checkpoints["data_root"], ["simplecnn"], toy_checkpoints["manifest"], "cpu",
                             toy_checkpoints["checkpoints"], tmp_path)


@pytest.mark.slow
def test_cli_ood_on_the_bundled_sample(tmp_path, capsys):
    """The command end to end on the bundled SMIDS sample with a copy of the shipped plain EfficientNet."""
    spec = get_dataset("smids")
    src = checkpoint_path(spec, "effnet", 0).parent
    if not src.is_dir():
        pytest.skip("no shipped smids/effnet checkpoints")
    ckpts = tmp_path / "checkpoints"
    shutil.copytree(src, ckpts / "smids" / "effnet", ignore=shutil.ignore_patterns("ood"))
    code = main(["ood", "--dataset", "smids", "--arch", "effnet", "--data-dir", str(SAMPLE_DATA_ROOT),
                 "--checkpoints", str(ckpts), "--results", str(tmp_path / "results")])
    assert code == 0
    assert "smids/effnet:" in capsys.readouterr().out
    report = load_ood("smids", tmp_path / "results")
    assert report["full_dataset"] is False and report["archs"]["effnet"]["split_as_trained"] is False
    assert len(list((ckpts / "smids" / "effnet" / "ood").glob("fold*.safetensors"))) == 5


def test_embedding_map_carries_the_fold_models_domain_score(toy_ood, tmp_path):
    """The map scores the features it already has with the fold model's detector: the same score ``predict``
    gives that image with that fold model alone (a feature-based detector, fitted here on toy features)."""
    from spermlib.calibration.detectors import fit_detector
    from spermlib.calibration.store import write_detector
    from spermlib.data.preprocess import load_uint8_batch
    from spermlib.evaluation.embedding import embedding_map

    ckpts = tmp_path / "checkpoints"
    shutil.copytree(toy_ood["checkpoints"], ckpts)
    predictor = Predictor.from_checkpoints(TOY, "simplecnn", checkpoints_dir=ckpts, device="cpu")
    paths = sorted(p.relative_to(toy_ood["data_root"]).as_posix() for p in toy_ood["data_root"].glob("*/*.png"))
    for fold in predictor.folds:
        (out,) = predictor.forward(load_uint8_batch(toy_ood["data_root"], paths, 48), folds=[fold])
        det = fit_detector("gaussian", out.features[::2], np.zeros(len(out.features[::2]), int), out.features[1::2])
        det.meta = {"weights_sha256": predictor.cards[predictor.folds.index(fold)]["weights_sha256"]}
        write_detector(detector_path(TOY, "simplecnn", fold, ckpts), det.to_stored())
    predictor = Predictor.from_checkpoints(TOY, "simplecnn", checkpoints_dir=ckpts, device="cpu")
    emap = embedding_map(predictor, TOY, toy_ood["data_root"], 1, splits_path=toy_ood["manifest"])
    assert emap.has_domain_scores
    row = emap.frame.iloc[3]
    (pred,) = predictor.subset([1]).predict_files([toy_ood["data_root"] / row["path"]])
    assert row["domain_score"] == pytest.approx(pred.domain_score, abs=1e-3)


def test_readme_block_shows_the_numbers_of_ood_json(tmp_path):
    from spermlib.evaluation.report import _ood_lines

    report = {"archs": {"effnet": {
        "detector": "gaussian", "test_folds": {"flagged": 0.056}, "targets_met": {"test_folds": True},
        "other_dataset": {"n_images": 3000, "auroc": 0.9891, "flagged": 0.969, "flagged_ensemble": 0.998},
        "natural_photographs": {"n_images": 75, "auroc": 0.93, "flagged": 0.5, "flagged_ensemble": 1.0},
        "shifts": {"inverted": {"auroc": 0.992, "flagged": 0.986}},
        "calibration": {"ece_before": 0.058, "ece_after": 0.092, "applied": False}}},
        "targets": ood_eval.TARGETS, "sets": {"other_dataset": "smids: x (3000 images)", "shifts": ["inverted"]},
        "protocol": "the protocol"}
    (tmp_path / "hushem").mkdir()
    (tmp_path / "hushem" / "ood.json").write_text(json.dumps(report))
    text = "\n".join(_ood_lines("hushem", tmp_path))
    assert "| (b) SMIDS images, all 3000 (target ≥ 0.95 / ≥ 90 %) | 0.989 / 96.9 % ✓ |" in text
    assert "| (d) natural photographs, 75 (target ≥ 0.95 / ≥ 90 %) | 0.930 / 50.0 % ✗ |" in text
    assert "| (c) test folds, inverted | 0.992 / 98.6 % |" in text
    assert "0.058 → 0.092 (not used by predict)" in text and "Protocol: the protocol." in text
    assert "| detector (chosen per fold on its own inner validation) | `gaussian` |" in text
    report["archs"]["effnet"]["detectors_per_fold"] = {"0": "multilayer", "1": "gaussian", "2": "multilayer"}
    (tmp_path / "hushem" / "ood.json").write_text(json.dumps(report))
    text = "\n".join(_ood_lines("hushem", tmp_path))
    assert "| `gaussian` (fold 1), `multilayer` (folds 0, 2) |" in text
    assert _ood_lines("smids", tmp_path) == []  # no ood.json: no block


def test_a_temperature_is_used_only_where_inner_validation_identifies_one():
    from spermlib.calibration.temperature import fit_temperature, identified_temperature, nll

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 40)
    # no mistake on the held-out split: the NLL falls monotonically as T -> 0, so there is no optimum to use
    separable = np.eye(3)[y] * 4.0
    assert nll(separable, y, 0.5) < nll(separable, y, 1.0) and identified_temperature(separable, y) is None
    # overconfident logits with mistakes: an interior optimum above 1, used as fitted
    noisy = np.eye(3)[np.where(rng.random(40) < 0.3, (y + 1) % 3, y)] * 8.0
    t = identified_temperature(noisy, y)
    assert t is not None and t > 1.5 and t == pytest.approx(fit_temperature(noisy, y))


@pytest.mark.parametrize("dataset", ["smids", "hushem"])
def test_shipped_cards_and_detectors_are_the_ones_ood_json_reports(dataset):
    """What predict uses (each card's temperature, each detector file) is what the committed ood.json measured:
    a temperature only on the folds whose inner validation identified one, and detectors fitted on these weights."""
    from spermlib.calibration.detectors import load_detector

    report = load_ood(dataset)
    if report is None or not report.get("full_dataset"):
        pytest.skip(f"no committed full-data ood.json for {dataset}")
    spec = get_dataset(dataset)
    for arch, entry in report["archs"].items():
        calib = entry["calibration"]
        for fold, fitted in calib["temperatures"].items():
            card = read_card(checkpoint_path(spec, arch, int(fold)))
            if int(fold) in calib["applied_folds"]:
                assert card.get("temperature") == pytest.approx(fitted), (arch, fold)
            else:
                assert card.get("temperature") is None, (arch, fold)
            det = load_detector(detector_path(spec, arch, int(fold)), card["weights_sha256"])
            chosen = entry.get("detectors_per_fold", {}).get(fold, entry["detector"])
            assert det is not None and det.method == chosen, (arch, fold)


def test_calibration_without_refit_reports_the_cards_temperatures():
    """A run that keeps the stored detectors writes no card, so it must report the temperatures the cards carry
    (what predict uses), not a fit of its own that no shipped model applies."""
    rng = np.random.default_rng(0)

    def fold_pass(fold, temperature):
        y = rng.integers(0, 3, 60)
        logits = np.eye(3)[np.where(rng.random(60) < 0.3, (y + 1) % 3, y)] * 8.0  # overconfident: fit > 1
        empty = np.zeros((60, 1), np.float32)
        return calibration_fit.FoldPass(fold, {"val": (empty, logits[:30], empty), "test": (empty, logits[30:], empty)},
                                 {"val": y[:30], "test": y[30:]}, {} if temperature is None else
                                 {"temperature": temperature})

    passes = [fold_pass(0, 1.25), fold_pass(1, None)]
    fresh = ood_eval.calibration(passes)
    kept = ood_eval.calibration(passes, stored=True)
    assert fresh["temperatures"]["0"] != pytest.approx(1.25) and fresh["source"] == "fitted by this run"
    assert kept["temperatures"]["0"] == pytest.approx(1.25) and kept["applied_folds"] == [0]
    assert kept["temperatures"]["1"] == pytest.approx(fresh["temperatures"]["1"])  # reported, not applied
    assert kept["ece_after"] != pytest.approx(fresh["ece_after"])
