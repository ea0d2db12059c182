"""Prediction on files (fold ensemble, per-file errors) and Grad-CAM++ / CBAM explanations."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from spermlib.cli import main
from spermlib.inference.explain import Explainer, energy_inside, gradcam_pp
from spermlib.inference.predict import Predictor
from spermlib.store.checkpoints import CheckpointError, read_card
from tests.model_fixtures import FOLD_CLASS, TOY, toy_image


@pytest.fixture(scope="module")
def predictor(toy_checkpoints):
    return Predictor.from_checkpoints(TOY, arch="simplecnn", checkpoints_dir=toy_checkpoints["checkpoints"])


def _write_toy(tmp_path, label, seed):
    img, mask = toy_image(label, np.random.default_rng(seed))
    p = tmp_path / f"{label}_{seed}.png"
    Image.fromarray(img).save(p)
    return p, mask


def test_ensemble_predicts_files_and_survives_bad_ones(tmp_path, predictor):
    good = [_write_toy(tmp_path, lab, 100 + i)[0] for i, lab in enumerate(TOY.class_dirs)]
    bad_text = tmp_path / "notes.png"
    bad_text.write_text("not an image")
    empty = tmp_path / "empty.bmp"
    empty.write_bytes(b"")
    results = predictor.predict_files([good[0], bad_text, good[1], empty, good[2]])
    assert [r.error is None for r in results] == [True, False, True, False, True]
    assert "not a recognised image" in results[1].error and "empty" in results[3].error
    for r, lab in zip([results[0], results[2], results[4]], TOY.class_dirs):
        assert r.label == lab
        assert abs(sum(r.probabilities.values()) - 1) < 1e-5
        assert len(r.fold_labels) == 2 and 0 <= r.agreement <= 1
    assert predictor.folds == [0, 1]


def test_gradcampp_lies_on_the_object(tmp_path, predictor):
    hits = []
    for seed in range(6):
        img, mask = toy_image("disc", np.random.default_rng(200 + seed))
        exp = Explainer(predictor).explain(Image.fromarray(img), class_idx=0)
        cam = exp.gradcam
        assert cam.shape == (48, 48) and float(cam.max()) > float(cam.min())  # not constant
        hits.append(energy_inside(cam, mask) / mask.mean())  # > 1: more CAM mass on the disc than chance
    assert np.median(hits) > 2.0, hits


def test_cam_overlays_written_by_cli(tmp_path, toy_checkpoints, capsys, monkeypatch):
    import spermlib.cli.predict as predict_command

    monkeypatch.setattr(predict_command, "get_dataset", lambda name: TOY)
    good, _ = _write_toy(tmp_path, "square", 7)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)  # PNG signature, then garbage
    rc = main(["predict", str(good), str(bad), "--dataset", "hushem", "--arch", "simplecnn", "--json",
               "--checkpoints", str(toy_checkpoints["checkpoints"]), "--cam", str(tmp_path / "cams")])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1  # one file failed
    assert out[0]["label"] == "square" and out[0]["error"] is None
    assert set(out[0]["probabilities"]) == set(TOY.class_dirs)
    assert out[1]["label"] is None and out[1]["error"]
    cam = Image.open(out[0]["cam_path"])
    assert cam.size == (48, 48) and cam.mode == "RGB"


def test_predict_defaults_to_the_apps_tta_and_no_tta_gives_one_view(tmp_path, toy_checkpoints, capsys, monkeypatch):
    """``predict``, the Python API and the Classify page share one default inference: the 8-view TTA."""
    import spermlib.api as api
    import spermlib.cli.predict as predict_command

    monkeypatch.setattr(predict_command, "get_dataset", lambda name: TOY)
    files = [str(_write_toy(tmp_path, label, 11)[0]) for label in ("disc", "square")]
    base = ["predict", *files, "--dataset", "hushem", "--arch", "simplecnn", "--json",
            "--checkpoints", str(toy_checkpoints["checkpoints"])]
    runs = {}
    for flag in ("", "--tta", "--no-tta"):
        assert main(base + ([flag] if flag else [])) == 0
        runs[flag] = np.array([[r["probabilities"][c] for c in TOY.class_dirs] for r in json.loads(
            capsys.readouterr().out)])
    np.testing.assert_array_equal(runs[""], runs["--tta"])
    assert np.abs(runs[""] - runs["--no-tta"]).max() > 1e-4
    monkeypatch.setattr("spermlib.data.datasets.get_dataset", lambda name: TOY)
    assert api.load_predictor("toy", "simplecnn", checkpoints_dir=toy_checkpoints["checkpoints"]).tta


def test_missing_checkpoints_give_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="train with"):
        Predictor.from_checkpoints(TOY, arch="effnet_cbam", checkpoints_dir=tmp_path)


def test_cbam_explanation(tmp_path):
    """effnet_cbam explanations include the CBAM spatial map at input resolution."""
    import torch

    from spermlib.models import build_model
    from spermlib.store.checkpoints import round_to_fp16_

    torch.manual_seed(0)
    m = round_to_fp16_(build_model("effnet_cbam", 3, "tf_efficientnet_lite0").eval())
    card = {"arch": "effnet_cbam", "backbone": "tf_efficientnet_lite0", "classes": list(TOY.class_dirs),
            "input_size": 64, "mean": [0.5] * 3, "std": [0.5] * 3, "dataset": "toy", "fold": 0}
    p = Predictor(TOY, [m], [card])
    img, _ = toy_image("disc", np.random.default_rng(0))
    exp = Explainer(p).explain(Image.fromarray(img))
    assert exp.cbam is not None and exp.cbam.shape == (64, 64)
    assert exp.gradcam.shape == (64, 64) and exp.rgb.shape == (64, 64, 3)


def test_faithfulness_prefers_the_real_map_over_its_inverse(predictor):
    """ROAD scores a map that marks the object above the same map inverted (pytorch-grad-cam metrics)."""
    import torch

    from spermlib.inference.explain import faithfulness_scores

    imgs, masks = zip(*(toy_image("disc", np.random.default_rng(300 + s)) for s in range(4)))
    u8 = predictor.preprocess([Image.fromarray(i) for i in imgs])
    x = predictor.model_input(u8).contiguous()
    model = predictor.models[0]
    cams = np.stack([gradcam_pp(model, x[i : i + 1], [0])[0] for i in range(len(imgs))])
    real = faithfulness_scores(model, x, cams, [0] * len(imgs))
    inverse = faithfulness_scores(model, x, 1 - cams, [0] * len(imgs))
    assert real["road_combined"].shape == (4,)
    assert real["road_combined"].mean() > inverse["road_combined"].mean()
    assert torch.is_tensor(x)


def test_each_fold_model_scores_with_its_own_weights(biased_checkpoints, tmp_path):
    """fold_labels[k] comes from fold k's model, and a one-fold predictor is that fold's model."""
    paths = [_write_toy(tmp_path, lab, 400 + i)[0] for i, lab in enumerate(TOY.class_dirs)]
    both = Predictor.from_checkpoints(TOY, "simplecnn", checkpoints_dir=biased_checkpoints["checkpoints"])
    for r in both.predict_files(paths):
        assert r.fold_labels == [FOLD_CLASS[0], FOLD_CLASS[1]] and r.agreement == 0.5
    ck = biased_checkpoints["checkpoints"]
    for fold, label in FOLD_CLASS.items():
        one = Predictor.from_checkpoints(TOY, "simplecnn", folds=[fold], checkpoints_dir=ck)
        assert {r.label for r in one.predict_files(paths)} == {label}
        # Explaining without a class explains what that fold model predicted.
        exp = Explainer(both).explain(Image.open(paths[0]).convert("RGB"), folds=[fold])
        assert TOY.class_dirs[exp.class_idx] == label


def test_a_subset_of_an_ensemble_is_that_fold_model_sharing_weights_and_lock(biased_checkpoints, tmp_path):
    """What the app uses for a bundled sample: the warm ensemble restricted to the fold that never saw it."""
    paths = [_write_toy(tmp_path, lab, 500 + i)[0] for i, lab in enumerate(TOY.class_dirs)]
    both = Predictor.from_checkpoints(TOY, "simplecnn", checkpoints_dir=biased_checkpoints["checkpoints"])
    for fold, label in FOLD_CLASS.items():
        view = both.subset([fold])
        assert view.folds == [fold] and view.models[0] is both.models[both.folds.index(fold)]
        assert view.lock is both.lock and view.cards[0]["fold"] == fold
        assert {r.label for r in view.predict_files(paths)} == {label} and all(
            r.agreement == 1.0 for r in view.predict_files(paths))
    assert both.folds == [0, 1]  # the ensemble itself is untouched
    with pytest.raises(CheckpointError, match="not loaded"):
        both.subset([3])


def test_explaining_a_fold_that_is_not_loaded_is_an_error(biased_checkpoints):
    only0 = Predictor.from_checkpoints(TOY, "simplecnn", folds=[0], checkpoints_dir=biased_checkpoints["checkpoints"])
    img = Image.fromarray(toy_image("disc", np.random.default_rng(5))[0])
    with pytest.raises(CheckpointError, match=r"fold\(s\) \[1\] not loaded \(loaded: \[0\]\)"):
        Explainer(only0).explain(img, class_idx=0, folds=[1])
    assert Explainer(only0).explain(img, class_idx=0, folds=[0]).gradcam.shape == (48, 48)


@pytest.mark.parametrize(("key", "value"), [("backbone", "mobilenetv2_100"), ("mean", [0.485, 0.456, 0.406]),
                                            ("std", [0.2, 0.2, 0.2])])
def test_an_ensemble_of_mismatched_folds_is_refused_naming_them(toy_checkpoints, tmp_path, key, value):
    import shutil

    ck = tmp_path / "ck"
    shutil.copytree(toy_checkpoints["checkpoints"], ck)
    card_file = ck / "toy" / "simplecnn" / "fold1.json"
    card = read_card(card_file)
    card[key] = value
    card_file.write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=rf"disagree on {key} \(fold 0: .*; fold 1: "):
        Predictor.from_checkpoints(TOY, "simplecnn", checkpoints_dir=ck)
    assert Predictor.from_checkpoints(TOY, "simplecnn", folds=[1], checkpoints_dir=ck).folds == [1]  # alone: fine


def test_an_ensemble_may_mix_input_sizes_and_each_fold_sees_its_own(toy_checkpoints, tmp_path):
    """Folds chosen per fold between recipes may differ in input size: the ensemble decodes at the largest, a
    smaller fold resizes that batch to its own, maps come back at the ensemble's size, and one fold alone gets
    exactly its own preprocessing (what evaluate scored)."""
    import shutil

    ck = tmp_path / "ck"
    shutil.copytree(toy_checkpoints["checkpoints"], ck)
    card_file = ck / "toy" / "simplecnn" / "fold1.json"
    card = read_card(card_file)
    card["input_size"] = 64  # SimpleCNN pools globally: the same weights run at 64 px
    card_file.write_text(json.dumps(card))
    mixed = Predictor.from_checkpoints(TOY, "simplecnn", checkpoints_dir=ck)
    only0 = Predictor.from_checkpoints(TOY, "simplecnn", folds=[0], checkpoints_dir=ck)
    only1 = Predictor.from_checkpoints(TOY, "simplecnn", folds=[1], checkpoints_dir=ck)
    assert (mixed.input_size, only0.input_size, only1.input_size, mixed.subset([0]).input_size) == (64, 48, 64, 48)

    img = Image.fromarray(toy_image("disc", np.random.default_rng(7))[0]).resize((90, 90))
    u8 = mixed.preprocess([img])
    probs = mixed.fold_probabilities(u8)
    np.testing.assert_allclose(probs[1], only1.fold_probabilities(only1.preprocess([img]))[0], atol=1e-6)
    from_64 = only0.preprocess([u8[0].permute(1, 2, 0).numpy()])  # fold 0 takes the 64 px batch down to 48
    np.testing.assert_allclose(probs[0], only0.fold_probabilities(from_64)[0], atol=1e-6)
    assert not np.allclose(probs[0], probs[1])

    (pred,) = mixed.predict_images([img])
    assert pred.model_input.shape == (64, 64, 3) and len(pred.fold_labels) == 2
    exp = Explainer(mixed).explain(pred.model_input, class_idx=0)
    assert exp.gradcam.shape == (64, 64) and exp.gradcam.min() >= 0 and exp.gradcam.max() <= 1
    assert Explainer(only0).explain(img, class_idx=0).gradcam.shape == (48, 48)


def test_an_upload_is_decoded_and_resized_once_for_prediction_and_explanation(predictor, tmp_path, monkeypatch):
    """predict_files(cam_dir) and the app's predict → explain reuse one decoded, resized input per image."""
    import spermlib.inference.core as core
    import spermlib.inference.predict as predict

    paths = []
    for i, lab in enumerate(TOY.class_dirs):
        img = Image.fromarray(toy_image(lab, np.random.default_rng(500 + i))[0]).resize((61, 57))  # needs a resize
        paths.append(tmp_path / f"{lab}.png")
        img.save(paths[-1])
    decoded, resized = [], []
    real_load, real_to_uint8 = predict.load_rgb, core.to_uint8_tensor
    monkeypatch.setattr(predict, "load_rgb", lambda src, **kw: decoded.append(src) or real_load(src, **kw))
    monkeypatch.setattr(core, "to_uint8_tensor",
                        lambda im, size: (resized.append(im.size) if im.size != (size, size) else None)
                        or real_to_uint8(im, size))
    results = Explainer(predictor).predict_files(paths, tmp_path / "cams")
    assert all(Image.open(r.cam_path).size == (48, 48) for r in results)
    assert len(decoded) == len(paths) and len(resized) == len(paths)

    decoded.clear(), resized.clear()
    (pred,) = predictor.predict_sources([paths[0]])
    exp = Explainer(predictor).explain(pred.model_input, class_idx=predictor.classes.index(pred.label))
    assert len(decoded) == 1 and len(resized) == 1
    np.testing.assert_array_equal(exp.rgb, pred.model_input)


def test_tta_prediction_of_one_fold_is_evaluate_tta_and_keeps_its_class_under_a_temperature(toy_checkpoints,
                                                                                           tmp_path):
    """``predict --fold K --tta`` gives ``evaluate --tta``'s out-of-fold rows; a card's temperature reshapes the
    TTA mean without changing a single model's class; ``with_tta`` is a view that shares models and lock."""
    import pandas as pd

    from spermlib.evaluation.evaluate import evaluate_dataset
    from spermlib.inference.core import ForwardOutput
    from spermlib.inference.predict import tempered

    root, ck = toy_checkpoints["data_root"], toy_checkpoints["checkpoints"]
    manifest = pd.read_csv(toy_checkpoints["manifest"])
    paths = sorted(manifest.loc[manifest["fold"] == 1, "path"])
    one = Predictor.from_checkpoints(TOY, "simplecnn", folds=[1], checkpoints_dir=ck)
    with_tta = one.with_tta()
    assert with_tta.tta and not one.tta and with_tta.models[0] is one.models[0] and with_tta.lock is one.lock
    assert with_tta.with_tta(True) is with_tta
    got = pd.DataFrame([r.probabilities for r in with_tta.predict_files([root / p for p in paths])], index=paths)
    evaluate_dataset(TOY, root, archs=["simplecnn"], splits_path=toy_checkpoints["manifest"], checkpoints_dir=ck,
                     tta=True, results_base=tmp_path)
    oof = pd.read_csv(tmp_path / "toy" / "oof_simplecnn+tta.csv").set_index("path").loc[paths]
    np.testing.assert_allclose(got[list(TOY.class_dirs)].to_numpy(),
                               oof[[f"prob_{c}" for c in TOY.class_dirs]].to_numpy(), atol=1e-4)
    plain = [r.probabilities for r in one.predict_files([root / p for p in paths])]
    assert np.abs(got.to_numpy() - pd.DataFrame(plain, index=paths).to_numpy()).max() > 1e-3  # not one view

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (50, 4)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    single = ForwardOutput(probs, logits, np.zeros((50, 1), np.float32), "fp32", "cpu")
    mean = ForwardOutput(probs, logits, single.features, "fp32", "cpu", first=single)  # as a TTA mean
    for t in (0.5, 1.7):
        np.testing.assert_allclose(tempered(mean, t), tempered(single, t), atol=1e-5)  # one rule, two forms
        assert (tempered(mean, t).argmax(1) == probs.argmax(1)).all()
        np.testing.assert_allclose(tempered(mean, t).sum(1), 1, atol=1e-5)
    assert tempered(mean, 2.0).max(1).mean() < probs.max(1).mean()  # T > 1 softens


def test_with_tta_the_domain_check_scores_the_image_itself(toy_checkpoints):
    """Out-of-domain detectors were fitted on single views: with TTA they still see the unaugmented image."""
    from spermlib.calibration.detectors import fit_detector

    one = Predictor.from_checkpoints(TOY, "simplecnn", folds=[0], checkpoints_dir=toy_checkpoints["checkpoints"])
    images = [toy_image(lab, np.random.default_rng(50 + i))[0] for i, lab in enumerate(TOY.class_dirs * 3)]
    u8 = one.preprocess(images)
    out = one.fold_models[0](u8, stats=True)
    one._detectors[0] = fit_detector("multilayer", out.features[:6], np.zeros(6, int), out.features[6:],
                                     out.logits[6:], train_stats=out.stats[:6], val_stats=out.stats[6:],
                                     stats_sizes=out.stats_sizes)
    plain = one.predict_images(images)
    tta = one.with_tta().predict_images(images)
    assert [p.domain_score for p in plain] == pytest.approx([p.domain_score for p in tta])
    assert [p.probabilities for p in plain] != [p.probabilities for p in tta]


# ----------------------------------------------------------------------------- streaming, overlay names, a full disk


def test_files_are_decoded_classified_and_handed_back_one_batch_at_a_time(tmp_path, predictor, monkeypatch):
    """Memory does not grow with the number of files: at most one decoded full-size image is alive, and a batch's
    predictions come back before the next batch's files are opened."""
    import gc
    import weakref

    import spermlib.inference.predict as predict

    paths = [_write_toy(tmp_path, TOY.class_dirs[i % 3], 900 + i)[0] for i in range(10)]
    alive, most_alive, opened = [0], [0], []
    real_load = predict.load_rgb

    def spying_load(src, **kw):
        gc.collect()
        img = real_load(src, **kw)
        alive[0] += 1
        most_alive[0] = max(most_alive[0], alive[0])
        weakref.finalize(img, lambda: alive.__setitem__(0, alive[0] - 1))
        opened.append(src)
        return img

    monkeypatch.setattr(predict, "load_rgb", spying_load)
    seen = []
    for batch in predictor.iter_sources([str(p) for p in paths], batch_size=4, keep_inputs=False):
        seen.append((len(batch), len(opened)))
    assert seen == [(4, 4), (4, 8), (2, 10)]  # each batch handed back before the next one is decoded
    assert most_alive[0] == 1


def test_overlay_names_are_unique_for_the_same_file_name_in_four_class_folders(tmp_path, toy_checkpoints, capsys,
                                                                              monkeypatch):
    """80 inputs from four class folders, each `*/image_001.BMP`-style: 80 overlays (not 20, one per file name)."""
    import spermlib.cli.predict as predict_command

    monkeypatch.setattr(predict_command, "get_dataset", lambda name: TOY)
    data = tmp_path / "data"
    for k, folder in enumerate(["01_Normal", "02_Tapered", "03_Pyriform", "04_Amorphous"]):
        (data / folder).mkdir(parents=True)
        for i in range(20):
            img, _ = toy_image(TOY.class_dirs[i % 3], np.random.default_rng(1000 * k + i))
            Image.fromarray(img).save(data / folder / f"image_{i + 1:03d}.BMP", format="BMP")
    cams = tmp_path / "cams"
    assert main(["predict", str(data), "--dataset", "hushem", "--arch", "simplecnn", "--json", "--no-tta",
                 "--checkpoints", str(toy_checkpoints["checkpoints"]), "--cam", str(cams)]) == 0
    preds = json.loads(capsys.readouterr().out)
    written = {p["cam_path"] for p in preds}
    assert len(preds) == 80 and len(written) == 80 and len(list(cams.rglob("*.png"))) == 80
    assert str(cams / "02_Tapered" / "image_001_gradcampp.png") in written


def test_overlay_names_keep_the_extension_only_where_names_would_clash():
    from pathlib import Path

    from spermlib.inference.explain import cam_file_names

    assert cam_file_names(["/d/x/a.png"]) == [Path("a_gradcampp.png")]
    assert cam_file_names(["/d/a.png", "/d/a.bmp", "/d/s/a.png", "/d/a.png"]) == [
        Path("a.png_gradcampp.png"), Path("a.bmp_gradcampp.png"), Path("s/a_gradcampp.png"),
        Path("a.png_gradcampp.png")]


@pytest.fixture
def full_cam_disk(monkeypatch, tmp_path):
    """Every overlay written under tmp_path/cams fails as on a full disk (the rename that completes a write)."""
    import errno

    from spermlib import fileio

    cams = tmp_path / "cams"
    real_replace = fileio.os.replace

    def replace(src, dst):
        if str(dst).startswith(str(cams)):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "replace", replace)
    return cams


@pytest.mark.parametrize("mode", ["json", "table"])
def test_a_full_disk_under_cam_prints_every_prediction_then_one_error_naming_the_file(
        tmp_path, toy_checkpoints, capsys, monkeypatch, full_cam_disk, mode):
    import spermlib.cli.predict as predict_command

    monkeypatch.setattr(predict_command, "get_dataset", lambda name: TOY)
    paths = [_write_toy(tmp_path, TOY.class_dirs[i % 3], 700 + i)[0] for i in range(5)]
    full_cam_disk.mkdir()
    old = full_cam_disk / f"{paths[0].stem}_gradcampp.png"
    old.write_bytes(b"the map of an earlier run")
    rc = main(["predict", *map(str, paths), "--dataset", "hushem", "--arch", "simplecnn", "--no-tta",
               "--checkpoints", str(toy_checkpoints["checkpoints"]), "--cam", str(full_cam_disk),
               *(["--json"] if mode == "json" else [])])
    out, err = capsys.readouterr()
    assert rc == 2 and "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]
    assert f"could not write {old}: no space left on device" in line and "5 of 5" in line
    assert old.read_bytes() == b"the map of an earlier run"  # the old file is whole
    if mode == "json":
        preds = json.loads(out)
        assert [p["path"] for p in preds] == list(map(str, paths))
        assert all(p["label"] in TOY.class_dirs and p["cam_path"] is None and p["cam_error"] for p in preds)
        assert str(old) in preds[0]["cam_error"] and "earlier overlay failed" in preds[1]["cam_error"]
    else:
        assert all(p.name in out for p in paths)


def test_a_table_that_cannot_be_written_keeps_the_old_one_and_names_it(tmp_path, toy_checkpoints, capsys,
                                                                     monkeypatch):
    import errno

    import spermlib.cli.predict as predict_command
    from spermlib import fileio

    monkeypatch.setattr(predict_command, "get_dataset", lambda name: TOY)
    out = tmp_path / "rows.csv"
    out.write_text("the table of an earlier run\n")

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.os, "replace", full)
    path = _write_toy(tmp_path, "disc", 5)[0]
    assert main(["predict", str(path), "--dataset", "hushem", "--arch", "simplecnn", "--no-tta", "--out", str(out),
                 "--checkpoints", str(toy_checkpoints["checkpoints"])]) == 2
    assert f"error: could not write {out}: no space left on device" in capsys.readouterr().err
    assert out.read_text() == "the table of an earlier run\n" and list(tmp_path.glob(".rows.csv*")) == []
