"""The Classify page: bundled samples and uploads are classified like the library does it, bad files
give exactly one st.error each while the rest still runs, and a fresh clone gets an st.info."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from PIL import Image
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from spermlib.dashboard.samples import sample_folds
from spermlib.data.datasets import SAMPLE_DATA_ROOT, get_dataset
from spermlib.inference.predict import Predictor
from tests.app.rendered import visible
from tests.dashboard.test_triage import bad_uploads, exotic_uploads

PAGE = str(Path(__file__).resolve().parents[2] / "views" / "classify.py")
SMIDS = get_dataset("smids")
HUSHEM = get_dataset("hushem")
NORMAL_SAMPLE = "Normal_Sperm/Boya_11435.bmp"
VERDICT = re.compile(r"(?P<fence>`+) (?P<name>.+?) (?P=fence) → \*\*(?P<display>[^*]+) \((?P<conf>[\d.]+)%\)\*\* · "
                     r"(?:(?P<agree>\d+/\d+) fold|fold-(?P<fold>\d+) model \(never saw it\))")
SAMPLE_FOLDS = {spec.name: sample_folds(spec) for spec in (SMIDS, HUSHEM)}


def _page(dataset: str = "smids", arch: str | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=180)
    at.session_state["classify_dataset"] = dataset
    if arch:
        at.session_state["classify_arch"] = arch
    return at.run()


def _verdicts(at: AppTest) -> list[dict]:
    return [m.groupdict() for md in at.markdown if (m := VERDICT.search(md.value))]


def _results(at: AppTest):
    (table,) = [d.value for d in at.dataframe if "prediction" in d.value.columns]
    return table


def _expected(dataset: str, arch: str, sources: list, names: list[str], folds: list[int] | None = None,
              tta: bool = True):
    """What the library says: the fold ensemble, or (``folds``) the fold models named; with test-time
    augmentation, as the page does by default."""
    predictor = Predictor.from_checkpoints(get_dataset(dataset), arch, folds=folds, tta=tta)
    return predictor.predict_sources(sources, names)


def _expected_sample(dataset: str, arch: str, sample: str, tta: bool = True):
    """A bundled sample's verdict by the one fold model that never saw it (its test fold in the manifest)."""
    spec = get_dataset(dataset)
    fold = SAMPLE_FOLDS[dataset][sample]
    (expected,) = _expected(dataset, arch, [SAMPLE_DATA_ROOT / spec.folder / sample], [sample], folds=[fold],
                            tta=tta)
    return expected, fold


@pytest.mark.parametrize("dataset", ["smids", "hushem"])
def test_without_checkpoints_the_page_explains_how_to_train(empty_env, dataset):
    at = _page(dataset)
    assert not at.exception, at.exception
    assert not at.error
    (info,) = at.info
    assert f"spermlib train --dataset {dataset}" in info.value
    assert not at.get("file_uploader")


def test_bundled_sample_is_classified_with_explanations(app_env):
    at = _page("smids")
    assert not at.exception, at.exception
    assert any("pick bundled samples" in i.value or "Upload one or more" in i.value for i in at.info)
    at.multiselect(key="classify_samples").set_value([NORMAL_SAMPLE]).run()
    assert not at.exception, at.exception
    assert not at.error

    (verdict,) = _verdicts(at)
    # A bundled sample is training data of 4 of the 5 fold models: the one that never saw it classifies it.
    expected, fold = _expected_sample("smids", "effnet_cbam", NORMAL_SAMPLE)
    assert verdict["name"] == NORMAL_SAMPLE
    assert verdict["display"] == expected.display
    assert verdict["conf"] == f"{100 * expected.confidence:.1f}"
    assert verdict["fold"] == str(fold) and verdict["agree"] is None
    assert any(f"fold-{fold} model, which never saw this image" in c.value for c in at.caption)

    (images,) = at.image
    assert images.captions[0] == "model input"
    assert images.captions[1] == f"Grad-CAM++ for {expected.display} (fold-{fold} model)"
    assert images.captions[2].startswith("CBAM spatial attention")  # effnet_cbam only
    assert len(at.get("plotly_chart")) == 1  # class probabilities (no batch charts for one image)
    table = _results(at)
    assert len(table) == 1 and table.loc[0, "prediction"] == expected.display
    assert table.loc[0, "confidence"] == pytest.approx(expected.confidence, abs=1e-4)
    assert table.loc[0, "classified by"] == f"fold-{fold} model (never saw it)"
    assert at.get("download_button")

    # the opacity slider and the class to explain re-render the maps without errors
    at.slider(key="classify_alpha").set_value(0.9).run()
    at.selectbox(key="classify_target").set_value("Non-Sperm").run()
    assert not at.exception
    assert at.image[0].captions[1].startswith("Grad-CAM++ for Non-sperm")

    # test-time augmentation is on by default; off, the verdict is the fold model's single view
    assert at.toggle(key="classify_tta").value is True
    at.toggle(key="classify_tta").set_value(False).run()
    assert not at.exception
    single, _ = _expected_sample("smids", "effnet_cbam", NORMAL_SAMPLE, tta=False)
    (verdict,) = _verdicts(at)
    assert verdict["conf"] == f"{100 * single.confidence:.1f}" and single.confidence != expected.confidence


def test_plain_effnet_has_no_cbam_map(app_env):
    at = _page("hushem", arch="effnet")
    at.multiselect(key="classify_samples").set_value(["02_Tapered/image_001.BMP"]).run()
    assert not at.exception
    (images,) = at.image
    assert len(images.captions) == 2 and not any("CBAM" in c for c in images.captions)


def test_batch_with_bad_files_one_error_each_and_the_rest_classified(app_env):
    limit_mb = st_config.get_option("server.maxUploadSize")
    st_config.set_option("server.maxUploadSize", 1)
    try:
        bad = bad_uploads() + [("huge.png", b"\x89PNG" + b"\0" * (1024 * 1024 + 10), "larger than the upload limit")]
        good = exotic_uploads()
        files = [(n, d, "application/octet-stream") for n, d, _ in bad] + [(n, d, "image/png") for n, d in good]
        at = _page("smids")
        at.file_uploader(key="classify_upload").set_value(files).run()
        at.multiselect(key="classify_samples").set_value([NORMAL_SAMPLE]).run()
    finally:
        st_config.set_option("server.maxUploadSize", limit_mb)
    assert not at.exception, at.exception

    # the page escapes the (user-chosen) file names in its Markdown: compare the text a reader sees
    errors = [visible(e.value) for e in at.error]
    assert len(errors) == len(bad), errors  # exactly one per bad file ...
    for (name, _, words), message in zip(bad, errors):
        assert message.startswith(f"{name}: ") and words in message  # ... naming it, with the reason

    table = _results(at)
    classified = table[table["error"] == ""]
    good_names = [n for n, _ in good] + [NORMAL_SAMPLE]
    assert classified["file"].tolist() == good_names
    assert classified["prediction"].isin([SMIDS.display(c) for c in SMIDS.class_dirs]).all()
    failed = table[table["error"] != ""]
    assert failed["file"].tolist() == [n for n, _, _ in bad] and failed["prediction"].isna().all()

    # same numbers as the library on the same bytes
    expected = _expected("smids", "effnet_cbam", [d for _, d in good], [n for n, _ in good])
    for exp, (_, row) in zip(expected, classified.iterrows()):
        assert exp.error is None and row["prediction"] == exp.display
        assert row["confidence"] == pytest.approx(exp.confidence, abs=1e-4)

    # batch extras: the normal-forms share against the WHO limit, and a CSV of the table
    assert any("WHO 2021 lower reference limit" in c.value for c in at.caption)
    shares = [m.value for m in at.markdown if m.value.startswith("**EfficientNet + CBAM**:")]
    assert len(shares) == 1 and f"{len(bad)} file(s) failed" in shares[0]
    assert len(at.get("plotly_chart")) == 3  # probabilities, normal share, predicted classes

    # another image of the batch can be inspected
    inspect = at.selectbox(key="classify_inspect")
    assert inspect.options == good_names
    inspect.select_index(1).run()
    assert not at.exception
    assert _verdicts(at)[0]["name"] == good_names[1]


def test_all_archs_side_by_side(app_env):
    at = _page("smids", arch="__all__")
    at.multiselect(key="classify_samples").set_value([NORMAL_SAMPLE, "Non-Sperm/Acrosome_Defect_584.bmp"]).run()
    assert not at.exception, at.exception
    headers = [m.value for m in at.markdown if m.value.startswith("#### ")]
    assert headers == ["#### EfficientNet + CBAM", "#### EfficientNet", "#### SimpleCNN"]  # the paper's model first
    assert [v["name"] for v in _verdicts(at)] == [NORMAL_SAMPLE] * 3
    table = _results(at)
    assert len(table) == 6 and sorted(table["arch"].unique()) == ["effnet", "effnet_cbam", "simplecnn"]
    for arch in ("simplecnn", "effnet"):
        expected, _ = _expected_sample("smids", arch, NORMAL_SAMPLE)
        row = table[(table["arch"] == arch) & (table["file"] == NORMAL_SAMPLE)].iloc[0]
        assert row["prediction"] == expected.display
        assert row["confidence"] == pytest.approx(expected.confidence, abs=1e-4)
    titles = r"\*\*(SimpleCNN|EfficientNet|EfficientNet \+ CBAM)\*\*:"
    shares = [m.value for m in at.markdown if re.match(titles, m.value)]
    assert len(shares) == 3


def test_hushem_image_that_is_not_a_head_crop_is_flagged(app_env):
    buf = io.BytesIO()
    Image.new("RGB", (400, 120), (180, 150, 200)).save(buf, format="PNG")
    at = _page("hushem")
    at.file_uploader(key="classify_upload").set_value(("wide_field.png", buf.getvalue(), "image/png")).run()
    assert not at.exception and not at.error
    assert any("does not look like a HuSHeM head crop" in w.value for w in at.warning)


def test_query_parameters_preselect_inputs(app_env):
    at = AppTest.from_file(PAGE, default_timeout=180)
    at.query_params["dataset"] = "hushem"
    at.query_params["arch"] = "simplecnn"
    at.query_params["sample"] = ["01_Normal/image_001.BMP", "04_Amorphous/image_005.BMP", "no/such.bmp"]
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="classify_dataset").value == "hushem"
    assert at.radio(key="classify_arch").value == "simplecnn"
    assert _results(at)["file"].tolist() == ["01_Normal/image_001.BMP", "04_Amorphous/image_005.BMP"]


def test_query_parameter_arch_all_shows_every_model(app_env):
    at = AppTest.from_file(PAGE, default_timeout=180)
    at.query_params["arch"] = "all"
    at.run()
    assert not at.exception, at.exception
    assert at.radio(key="classify_arch").value == "__all__"


def _png(seed: int) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_an_upload_above_the_file_limit_is_one_error_and_nothing_is_classified(app_env, monkeypatch):
    import spermlib.dashboard.triage as triage

    monkeypatch.setenv("SPERMLIB_MAX_UPLOAD_FILES", "3")
    classified = []
    real = triage.classify_inputs
    monkeypatch.setattr(triage, "classify_inputs", lambda *a, **kw: classified.append(1) or real(*a, **kw))
    at = _page("smids")
    at.file_uploader(key="classify_upload").set_value(
        [(f"cell_{i}.png", _png(i), "image/png") for i in range(4)]).run()
    assert not at.exception, at.exception
    (error,) = at.error
    assert "4 files uploaded" in error.value and "at most 3" in error.value and "none was classified" in error.value
    assert not _verdicts(at) and not [d for d in at.dataframe if "prediction" in d.value.columns]
    assert not classified

    at.file_uploader(key="classify_upload").set_value(
        [(f"cell_{i}.png", _png(i), "image/png") for i in range(3)]).run()  # at the limit: classified
    assert not at.error and len(_results(at)) == 3


def test_the_results_csv_keeps_formula_like_file_names_as_text(app_env, monkeypatch):
    import streamlit

    seen = []
    original = streamlit.download_button
    monkeypatch.setattr(streamlit, "download_button",
                        lambda label, data, *a, **kw: seen.append(data) or original(label, data, *a, **kw))
    at = _page("smids")
    at.file_uploader(key="classify_upload").set_value(
        [("=HYPERLINK(evil).png", _png(1), "image/png"), ("@SUM(A1).png", _png(2), "image/png")]).run()
    assert not at.exception, at.exception
    (csv,) = [d for d in seen if b"prediction" in d]
    assert b"'=HYPERLINK(evil).png" in csv and b"'@SUM(A1).png" in csv
    assert not re.search(rb"(^|,)[=@+\-]", csv, re.MULTILINE)
