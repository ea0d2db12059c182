"""spermlib.dashboard.triage: decoding of uploads, the warning rules, the normal-forms share and the results table.

The upload cases built here (bad files that must each give one clear error, exotic-but-valid images
that must be classified) are reused by the dashboard tests in tests/app/test_classify.py.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from spermlib.dashboard import samples, triage
from spermlib.data.datasets import SAMPLE_DATA_ROOT, get_dataset
from spermlib.inference.predict import Prediction

SMIDS = get_dataset("smids")
HUSHEM = get_dataset("hushem")

# ------------------------------------------------------------------------------------ upload cases


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose (valid) header claims ``width × height`` pixels with a few bytes of data: a bomb's header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\0\0" * 8)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _noise(h: int = 96, w: int = 80, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def bad_uploads() -> list[tuple[str, bytes, str]]:
    """(name, bytes, words the one error message must contain) for files that cannot be decoded."""
    png = _encode(Image.fromarray(_noise()), "PNG")
    return [
        ("notes.png", b"these are my lab notes, not an image\n" * 4, "not a recognised image format"),
        ("truncated.png", png[: len(png) // 2], "truncated"),
        ("empty.jpg", b"", "empty (0 bytes)"),
        ("bomb.png", png_claiming(100_000, 100_000), "too large"),
    ]


def exotic_uploads() -> list[tuple[str, bytes]]:
    """Valid images in unusual modes/containers or with a lying extension: all must be classified."""
    rgb = _noise()
    grey16 = Image.fromarray((np.linspace(0, 65535, 96 * 80).reshape(96, 80)).astype(np.uint16))
    frames = [Image.fromarray(rgb), Image.fromarray(255 - rgb)]
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])
    return [
        ("grey16.png", _encode(grey16, "PNG")),
        ("cmyk.jpg", _encode(Image.fromarray(rgb).convert("CMYK"), "JPEG")),
        ("palette.png", _encode(Image.fromarray(rgb).convert("P"), "PNG")),
        ("rgba.png", _encode(Image.fromarray(rgba, "RGBA"), "PNG")),
        ("animated.png", _encode(frames[0], "PNG", save_all=True, append_images=frames[1:])),
        ("animated.gif", _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])),
        ("really_a_png.bmp", _encode(Image.fromarray(rgb), "PNG")),
    ]


def test_exotic_uploads_really_are_exotic():
    """Guards the fixtures: each file is what its name says (so the tests below test something)."""
    modes = {name: Image.open(io.BytesIO(data)) for name, data in exotic_uploads()}
    assert modes["grey16.png"].mode.startswith("I")
    assert modes["cmyk.jpg"].mode == "CMYK"
    assert modes["palette.png"].mode == "P"
    assert modes["rgba.png"].mode == "RGBA"
    assert modes["animated.png"].n_frames == 2 and modes["animated.gif"].n_frames == 2
    assert modes["really_a_png.bmp"].format == "PNG"


# ------------------------------------------------------------------------------------ decoding


def test_decode_inputs_gives_one_error_per_bad_file_and_decodes_the_rest():
    items = [(n, d) for n, d, _ in bad_uploads()] + exotic_uploads()
    decoded = triage.decode_inputs(items, limit_mb=20)
    assert [d.name for d in decoded] == [n for n, _ in items]  # order kept
    for item, (_, _, words) in zip(decoded, bad_uploads()):
        assert item.image is None
        assert item.error.startswith(f"{item.name}: ") and words in item.error
    for item in decoded[len(bad_uploads()):]:
        assert item.error is None, item.error
        assert item.image.mode == "RGB" and item.image.size == (80, 96)
        assert (item.width, item.height) == (80, 96)


def test_upload_limit():
    data = b"\x89PNG" + b"\0" * (1024 * 1024)  # just over 1 MB; never decoded
    (item,) = triage.decode_inputs([("big.png", data)], limit_mb=1)
    assert item.image is None and "larger than the upload limit" in item.error and "1 MB" in item.error
    assert triage.upload_limit_error("ok.png", 1024 * 1024, 1) is None
    assert triage.upload_limit_error("x.png", 1024 * 1024 + 1, 1).startswith("x.png: ")


# ------------------------------------------------------------------------------------ warnings


def _pred(spec, probs: list[float], fold_votes: list[int] | None = None, name: str = "x.png") -> Prediction:
    classes = list(spec.class_dirs)
    k = int(np.argmax(probs))
    votes = fold_votes if fold_votes is not None else [k] * 5
    return Prediction(path=name, label=classes[k], display=spec.display(classes[k]), confidence=float(probs[k]),
                      probabilities=dict(zip(classes, map(float, probs))), fold_labels=[classes[v] for v in votes],
                      agreement=float(np.mean([v == k for v in votes])))


def _kinds(warnings: list[triage.TriageWarning]) -> list[str]:
    return [w.kind for w in warnings]


def test_confident_unanimous_sperm_prediction_has_no_warning():
    assert triage.triage_warnings(_pred(SMIDS, [0.9, 0.08, 0.02]), SMIDS) == []
    assert triage.triage_warnings(_pred(HUSHEM, [0.7, 0.1, 0.1, 0.1]), HUSHEM, 131, 131) == []


@pytest.mark.parametrize("confidence,warned", [(0.59, True), (0.60, False), (0.35, True)])
def test_low_confidence_threshold(confidence, warned):
    rest = (1 - confidence) / 3
    pred = _pred(HUSHEM, [confidence, rest, rest, rest])
    assert ("low_confidence" in _kinds(triage.triage_warnings(pred, HUSHEM))) is warned


@pytest.mark.parametrize("votes,warned", [([0, 0, 0, 0, 0], False), ([0, 0, 0, 0, 1], False),
                                          ([0, 0, 0, 1, 1], True), ([0, 0, 1, 2, 3], True)])
def test_fold_disagreement(votes, warned):
    pred = _pred(HUSHEM, [0.7, 0.1, 0.1, 0.1], fold_votes=votes)
    warnings = triage.triage_warnings(pred, HUSHEM)
    assert ("disagreement" in _kinds(warnings)) is warned
    if warned:
        text = next(w.message for w in warnings if w.kind == "disagreement")
        assert f"{votes.count(0)}/5 fold models agree" in text


def test_non_sperm_warning_for_smids_only():
    predicted = triage.triage_warnings(_pred(SMIDS, [0.1, 0.1, 0.8]), SMIDS)
    assert _kinds(predicted) == ["non_sperm"] and "left out of the normal-forms share" in predicted[0].message
    likely = triage.triage_warnings(_pred(SMIDS, [0.65, 0.0, 0.35]), SMIDS)
    assert _kinds(likely) == ["non_sperm"] and "May be Non-Sperm" in likely[0].message
    assert triage.triage_warnings(_pred(SMIDS, [0.71, 0.0, 0.29]), SMIDS) == []
    assert "non_sperm" not in _kinds(triage.triage_warnings(_pred(HUSHEM, [0.1, 0.1, 0.1, 0.7]), HUSHEM))


@pytest.mark.parametrize("size,ok", [((131, 131), True), ((120, 140), True), ((300, 100), False),
                                     ((40, 40), False), ((1024, 1024), False)])
def test_head_crop_check_for_hushem(size, ok):
    assert triage.looks_like_head_crop(*size) is ok
    warnings = triage.triage_warnings(_pred(HUSHEM, [0.9, 0.05, 0.03, 0.02]), HUSHEM, *size)
    assert ("not_head_crop" in _kinds(warnings)) is (not ok)
    # SMIDS patches are not head crops; the check does not apply there
    assert triage.triage_warnings(_pred(SMIDS, [0.9, 0.08, 0.02]), SMIDS, *size) == []


def test_failed_prediction_has_no_warnings():
    assert triage.triage_warnings(Prediction(path="x", error="x: broken"), SMIDS) == []


def test_agreement_text():
    assert triage.agreement_text(_pred(SMIDS, [0.9, 0.05, 0.05], [0, 0, 0, 0, 1])) == "4/5 fold models agree"
    assert triage.agreement_text(_pred(SMIDS, [0.9, 0.05, 0.05], [0])) == "1/1 fold model agrees"
    assert triage.agreement_text(Prediction(path="x", error="bad")) == ""


# ------------------------------------------------------------------------------------ normal share


def test_normal_share_excludes_non_sperm_and_failures_for_smids():
    preds = [_pred(SMIDS, [0.8, 0.1, 0.1]), _pred(SMIDS, [0.1, 0.8, 0.1]), _pred(SMIDS, [0.1, 0.8, 0.1]),
             _pred(SMIDS, [0.1, 0.1, 0.8]), Prediction(path="bad", error="bad: broken"), None]
    share = triage.normal_share(preds, SMIDS)
    assert (share.n_normal, share.n_sperm, share.n_non_sperm, share.n_failed) == (1, 3, 1, 2)
    assert share.share == pytest.approx(1 / 3) and share.below_who_limit is False


def test_normal_share_hushem_counts_every_head_and_flags_the_who_limit():
    preds = [_pred(HUSHEM, [0.1, 0.7, 0.1, 0.1])] * 25 + [_pred(HUSHEM, [0.7, 0.1, 0.1, 0.1])]
    share = triage.normal_share(preds, HUSHEM)
    assert (share.n_normal, share.n_sperm, share.n_non_sperm) == (1, 26, 0)
    assert share.share == pytest.approx(1 / 26) and share.below_who_limit is True  # 3.8 % < 4 %
    assert triage.WHO_2021_NORMAL_FORMS_LRL == 0.04


def test_normal_share_of_nothing():
    share = triage.normal_share([_pred(SMIDS, [0.1, 0.1, 0.8])], SMIDS)
    assert share.share is None and share.below_who_limit is None


def test_normal_share_accepts_arch_results():
    results = [triage.ArchResult("effnet", _pred(SMIDS, [0.8, 0.1, 0.1])), None]
    assert triage.normal_share(results, SMIDS).n_normal == 1


# ------------------------------------------------------------------------------------ classify + table


class _StubPredictor:
    """Stands in for a Predictor: a fixed probability vector per image, keyed by image width."""

    def __init__(self, spec, by_width: dict[int, list[float]]):
        self.spec, self.by_width = spec, by_width
        self.calls: list[list[str]] = []

    def predict_images(self, images, names):
        self.calls.append(list(names))
        return [_pred(self.spec, self.by_width[im.width], name=n) for im, n in zip(images, names)]


def _png(width: int, height: int = 50) -> bytes:
    return _encode(Image.new("RGB", (width, height), (120, 60, 160)), "PNG")


def test_classify_inputs_and_results_table():
    items = [("a.png", _png(60)), ("broken.png", b"nope"), ("b.png", _png(70))]
    inputs = triage.decode_inputs(items, limit_mb=20)
    stub = _StubPredictor(SMIDS, {60: [0.8, 0.1, 0.1], 70: [0.2, 0.3, 0.5]})
    results = triage.classify_inputs({"effnet": stub, "effnet_cbam": stub}, inputs, SMIDS)
    assert stub.calls == [["a.png", "b.png"], ["a.png", "b.png"]]  # the broken file never reaches a model
    assert results["effnet"][1] is None
    assert results["effnet"][0].prediction.display == "Normal" and results["effnet"][0].warnings == []
    assert _kinds(results["effnet"][2].warnings) == ["low_confidence", "non_sperm"]

    table = triage.results_table(inputs, results, SMIDS)
    assert list(table.columns) == ["file", "model", "arch", "prediction", "confidence", "agreement", "classified by",
                                   "P(Normal)", "P(Abnormal)", "P(Non-sperm)", "in domain", "domain score", "warnings",
                                   "error"]
    assert table["file"].tolist() == ["a.png", "a.png", "broken.png", "b.png", "b.png"]  # one row per failed file
    failed = table[table["file"] == "broken.png"].iloc[0]
    assert "not a recognised image format" in failed["error"] and pd.isna(failed["prediction"])
    row = table[(table["file"] == "b.png") & (table["arch"] == "effnet")].iloc[0]
    assert row["prediction"] == "Non-sperm" and row["P(Non-sperm)"] == 0.5 and "Low confidence" in row["warnings"]

    csv = triage.to_csv_bytes(table).decode()
    assert csv.splitlines()[0].startswith("file,model,arch,prediction") and len(csv.splitlines()) == 6
    assert set(table["model"].dropna()) == {"EfficientNet", "EfficientNet + CBAM"}
    assert pd.read_csv(io.StringIO(csv))["file"].tolist() == table["file"].tolist()


def test_routed_inputs_go_to_their_fold_model_and_the_rest_to_the_ensemble():
    """A bundled sample is classified by the one fold model that never saw it; uploads by the ensemble."""
    items = [("upload.png", _png(60)), ("Normal_Sperm/s1.png", _png(70)), ("Normal_Sperm/s2.png", _png(60)),
             ("Abnormal_Sperm/s3.png", _png(70))]
    inputs = triage.decode_inputs(items)
    installed = [0, 1, 2, 3, 4]
    folds = {"Normal_Sperm/s1.png": 3, "Normal_Sperm/s2.png": 1, "Abnormal_Sperm/s3.png": 3}
    routes = samples.routes(1, [name for name, _ in items[1:]], folds, installed)
    ensemble = _StubPredictor(SMIDS, {60: [0.8, 0.1, 0.1]})
    fold_models = {k: _StubPredictor(SMIDS, {60: [0.1, 0.8, 0.1], 70: [0.1, 0.1, 0.8]}) for k in installed}
    loaded = []

    def fold_predictor(arch, fold):
        loaded.append((arch, fold))
        return fold_models[fold]

    results = triage.classify_inputs({"effnet_cbam": ensemble}, inputs, SMIDS, {"effnet_cbam": routes},
                                     fold_predictor)
    assert ensemble.calls == [["upload.png"]]
    assert fold_models[3].calls == [["Normal_Sperm/s1.png", "Abnormal_Sperm/s3.png"]]  # one batch per fold
    assert fold_models[1].calls == [["Normal_Sperm/s2.png"]]
    assert sorted(loaded) == [("effnet_cbam", 1), ("effnet_cbam", 3)]
    got = results["effnet_cbam"]
    assert [r.prediction.display for r in got] == ["Normal", "Non-sperm", "Abnormal", "Non-sperm"]
    assert got[1].verdict_source == "fold-3 model (never saw it)"
    assert got[0].verdict_source == triage.agreement_text(got[0].prediction)
    table = triage.results_table(inputs, results, SMIDS)
    assert table["classified by"].tolist() == ["ensemble of 5 fold models", "fold-3 model (never saw it)",
                                               "fold-1 model (never saw it)", "fold-3 model (never saw it)"]


def test_classify_inputs_without_good_images_calls_no_model():
    inputs = triage.decode_inputs([("x.png", b"")])
    stub = _StubPredictor(SMIDS, {})
    assert triage.classify_inputs({"effnet": stub}, inputs, SMIDS) == {"effnet": [None]}
    assert stub.calls == []


def test_bundled_sample_sizes_fit_their_task():
    """The head-crop rule must not fire on real HuSHeM images (131 × 131, a few trimmed to 118–124 px)."""
    paths = sorted((SAMPLE_DATA_ROOT / "HuSHeM").rglob("*.BMP"))
    assert len(paths) == 80
    for path in paths:
        (item,) = triage.decode_inputs([(path.name, path.read_bytes())])
        assert triage.looks_like_head_crop(item.width, item.height)
