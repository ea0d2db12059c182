"""Misclassification explorer: filters against a pandas computation on the OOF CSV, CSV export,
Grad-CAM++ from the fold model that never saw the image, missing image files."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
import streamlit
from streamlit.testing.v1 import AppTest

from spermlib.dashboard import resources
from spermlib.data.datasets import SAMPLE_DATA_ROOT, get_dataset
from spermlib.inference.explain import Explainer

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def open_page(page: str = "views/mistakes.py") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def oof_with_confidence(results: Path, dataset: str, arch: str) -> pd.DataFrame:
    oof = pd.read_csv(results / dataset / f"oof_{arch}.csv", keep_default_na=False)
    oof["confidence"] = [row[f"prob_{row['pred']}"] for _, row in oof.iterrows()]
    return oof


def shown_paths(at: AppTest) -> list[str]:
    return sorted(at.dataframe[0].value["path"])


@pytest.fixture
def captured_downloads(monkeypatch):
    """The bytes each st.download_button was given (AppTest does not expose them)."""
    seen: list[bytes] = []
    original = streamlit.download_button

    def spy(label, data, *args, **kwargs):
        seen.append(data)
        return original(label, data, *args, **kwargs)

    monkeypatch.setattr(streamlit, "download_button", spy)
    return seen


def test_filters_match_pandas_on_the_oof_csv(app_env):
    results = app_env["results"]
    at = open_page()
    at.selectbox(key="mistakes_dataset").set_value("smids").run()
    at.selectbox(key="mistakes_arch_smids").set_value("effnet").run()
    oof = oof_with_confidence(results, "smids", "effnet")
    wrong = oof[oof["label"] != oof["pred"]]
    assert shown_paths(at) == sorted(wrong["path"])  # default: errors only, any class, any confidence

    at.multiselect(key="mistakes_true_smids").set_value(["Abnormal_Sperm"]).run()
    expected = wrong[wrong["label"] == "Abnormal_Sperm"]
    assert shown_paths(at) == sorted(expected["path"]) and 0 < len(expected) < len(wrong)

    at.multiselect(key="mistakes_pred_smids").set_value(["Non-Sperm"]).run()
    expected = expected[expected["pred"] == "Non-Sperm"]
    assert shown_paths(at) == sorted(expected["path"])

    at.multiselect(key="mistakes_true_smids").set_value([]).run()
    at.multiselect(key="mistakes_pred_smids").set_value([]).run()
    lo, hi = 0.40, 0.50
    at.slider(key="mistakes_conf").set_range(lo, hi).run()
    expected = wrong[wrong["confidence"].between(lo, hi)]
    assert shown_paths(at) == sorted(expected["path"]) and len(expected) < len(wrong)

    at.checkbox(key="mistakes_errors_only").uncheck().run()
    assert shown_paths(at) == sorted(oof.loc[oof["confidence"].between(lo, hi), "path"])
    assert not at.exception, at.exception


def copy_results(src: Path, dst: Path) -> Path:
    for f in src.rglob("*"):
        if f.is_file():
            (dst / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            (dst / f.relative_to(src)).write_bytes(f.read_bytes())
    return dst


def test_archs_disagree_filter(app_env, tmp_path, monkeypatch):
    # The 1-epoch SimpleCNN predicts one class for everything, so it disagrees almost everywhere; make it a
    # copy of EfficientNet so that the filter has something to separate: then it must equal effnet ≠ CBAM.
    results = copy_results(app_env["results"], tmp_path / "results")
    (results / "smids" / "oof_simplecnn.csv").write_bytes((results / "smids" / "oof_effnet.csv").read_bytes())
    monkeypatch.setenv("SPERMLIB_RESULTS", str(results))
    at = open_page()
    at.selectbox(key="mistakes_dataset").set_value("smids").run()
    at.checkbox(key="mistakes_errors_only").uncheck().run()
    at.checkbox(key="mistakes_disagree").check().run()
    preds = pd.concat([pd.read_csv(results / "smids" / f"oof_{a}.csv").set_index("path")["pred"]
                       for a in ("simplecnn", "effnet", "effnet_cbam")], axis=1)
    differ = preds.nunique(axis=1) > 1
    assert shown_paths(at) == sorted(differ[differ].index)
    assert 0 < differ.sum() < len(differ)
    at.checkbox(key="mistakes_disagree").uncheck().run()
    assert len(shown_paths(at)) == len(differ)


def test_csv_export_equals_the_filtered_table(app_env, captured_downloads):
    at = open_page()
    at.selectbox(key="mistakes_dataset").set_value("hushem").run()
    at.multiselect(key="mistakes_true_hushem").set_value(["01_Normal", "03_Pyriform"]).run()
    table = at.dataframe[0].value
    exported = pd.read_csv(io.BytesIO(captured_downloads[-1]), keep_default_na=False)
    assert len(exported) == len(table) > 0
    pd.testing.assert_frame_equal(exported.reset_index(drop=True), table.reset_index(drop=True), check_dtype=False)
    assert set(exported["label"]) <= {"01_Normal", "03_Pyriform"} and (exported["label"] != exported["pred"]).all()


def test_gradcam_of_each_arch_comes_from_the_fold_that_never_saw_the_image(app_env, monkeypatch):
    calls: list[tuple[str, list[int] | None]] = []
    original = Explainer.explain

    def spy(self, image, class_idx=None, folds=None):
        calls.append((self.predictor.arch, None if folds is None else list(folds)))
        return original(self, image, class_idx=class_idx, folds=folds)

    monkeypatch.setattr(Explainer, "explain", spy)
    streamlit.cache_data.clear()  # CAMs of earlier tests are cached: make this run compute them
    resources.prediction_cache.cache_clear()
    at = open_page()
    at.selectbox(key="mistakes_dataset").set_value("smids").run()
    at.selectbox(key="mistakes_arch_smids").set_value("effnet_cbam").run()
    image = at.selectbox(key="mistakes_image_smids").value
    folds = {a: int(pd.read_csv(app_env["results"] / "smids" / f"oof_{a}.csv").set_index("path").at[image, "fold"])
             for a in ("simplecnn", "effnet", "effnet_cbam")}
    assert sorted(calls[-3:]) == sorted((a, [k]) for a, k in folds.items())
    captions = [c for img in at.get("image") for c in img.captions]
    cams = [c for c in captions if "never saw this image" in c]
    assert len(cams) == 3 and all(f"fold-{folds['effnet']} model" in c for c in cams)
    assert any("CBAM spatial attention" in c for c in captions)
    assert not at.error


def test_images_missing_from_the_data_root_are_skipped_with_a_notice(app_env, tmp_path, monkeypatch):
    # Results listing images this checkout does not have (as when they were computed on the full dataset).
    results = copy_results(app_env["results"], tmp_path / "results")
    classes = get_dataset("hushem").class_dirs
    for f in (results / "hushem").glob("oof_*.csv"):
        df = pd.read_csv(f)
        ghosts = df.head(3).assign(path=[f"01_Normal/not_here_{i}.bmp" for i in range(3)], label="01_Normal",
                                   pred=list(classes[1:]))  # errors of every arch
        pd.concat([df, ghosts]).to_csv(f, index=False)
    monkeypatch.setenv("SPERMLIB_RESULTS", str(results))
    at = open_page()
    at.selectbox(key="mistakes_dataset").set_value("hushem").run()
    assert not at.exception, at.exception
    (notice,) = [i.value for i in at.info if "3 of" in i.value]
    assert "not in this installation's HuSHeM data folder (`sample_data/HuSHeM`)" in notice
    page_text = [e.value for kind in ("info", "markdown", "caption", "error", "warning") for e in at.get(kind)]
    assert not [t for t in page_text if str(Path.cwd()) in t or str(SAMPLE_DATA_ROOT) in t]  # no server path
    listed = set(at.dataframe[0].value["path"])
    assert {f"01_Normal/not_here_{i}.bmp" for i in range(3)} <= listed  # still in the table and the CSV
    assert not any("not_here" in o for o in at.selectbox(key="mistakes_image_hushem").options)
    captions = [c for img in at.get("image") for c in img.captions]
    assert len([c for c in captions if "→" in c]) == min(24, len(listed) - 3)  # gallery: only files present
    assert not at.error


def test_mistakes_without_results_says_what_to_run(empty_env):
    at = open_page()
    assert "spermlib evaluate --dataset smids" in at.info[0].value


def test_gallery_pages_survive_a_narrower_filter(app_env):
    at = open_page()
    at.selectbox(key="mistakes_dataset").set_value("hushem").run()
    at.checkbox(key="mistakes_errors_only").uncheck().run()
    n = len(at.dataframe[0].value)
    page = at.number_input(key="mistakes_page")
    assert page.max == (n - 1) // 24 + 1 >= 2
    page.set_value(page.max).run()
    gallery = [c for img in at.get("image") for c in img.captions if "→" in c]
    assert len(gallery) == n - 24 * (page.max - 1)  # the last page holds the remainder
    at.multiselect(key="mistakes_true_hushem").set_value(["01_Normal"]).run()
    assert not at.exception, at.exception
    assert len([c for img in at.get("image") for c in img.captions if "→" in c]) == len(at.dataframe[0].value) <= 24
