"""The Dataset explorer page: renders on the bundled data with and without results, filters,
pagination, and the metadata of a selected image (incl. SMIDS's conflicting-label duplicate pair)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.rendered import visible

PAGE = str(Path(__file__).resolve().parents[2] / "views" / "explorer.py")
CONFLICT_PAIR = ("Abnormal_Sperm/Acrosome_Abnormality (50).png", "Non-Sperm/Normal_2895.bmp")


def _run(dataset: str = "smids") -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["explorer_dataset"] = dataset
    return at.run()


def _match_count(at: AppTest) -> int:
    """The number of images the gallery says match the filters."""
    (caption,) = [c.value for c in at.caption if "images match" in c.value]
    return int(re.match(r"(\d+) images match", caption).group(1))


def _thumbnails(at: AppTest) -> list[str]:
    """Paths of the images on the current gallery page (one View button each)."""
    return [b.key.split("::", 1)[1] for b in at.button if b.key and b.key.startswith("view::")]


def _metadata(at: AppTest) -> dict[str, str]:
    (table,) = [d.value for d in at.dataframe if list(d.value.columns) == ["field", "value"]]
    return dict(zip(table["field"], table["value"]))


@pytest.mark.parametrize("dataset,n_images", [("smids", 62), ("hushem", 80)])
@pytest.mark.parametrize("env", ["app_env", "empty_env"])
def test_explorer_renders_both_datasets_with_and_without_results(request, env, dataset, n_images):
    request.getfixturevalue(env)
    at = _run(dataset)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.title[0].value == "Dataset explorer"
    assert _match_count(at) == n_images
    assert len(_thumbnails(at)) == 24  # first page only
    assert len(at.get("plotly_chart")) == 2  # class counts, image sizes
    citation = {"smids": "doi:10.17632/6xvdhc9fyb.1", "hushem": "doi:10.17632/tt3yj2pf38.3"}[dataset]
    assert any(citation in visible(c.value) for c in at.caption)
    oof_tables = [d.value for d in at.dataframe if "prediction" in d.value.columns]
    evaluate_hint = [visible(i.value) for i in at.info if "spermlib evaluate" in visible(i.value)]
    if env == "app_env":
        assert not evaluate_hint
        (oof,) = oof_tables
        assert oof["arch"].tolist() == ["SimpleCNN", "EfficientNet", "EfficientNet + CBAM"]
        assert oof["prediction"].str.len().gt(0).all()
    else:
        assert evaluate_hint and f"--dataset {dataset}" in evaluate_hint[0]
        assert not oof_tables


def test_class_and_fold_filters_change_the_gallery(empty_env):
    at = _run("smids")
    assert _match_count(at) == 62
    at.multiselect(key="explorer_classes").set_value(["Non-Sperm"]).run()
    assert _match_count(at) == 21
    assert len(_thumbnails(at)) == 21 and all(p.startswith("Non-Sperm/") for p in _thumbnails(at))
    at.multiselect(key="explorer_folds").set_value([0]).run()
    assert _match_count(at) == 4 and len(_thumbnails(at)) == 4
    at.multiselect(key="explorer_classes").set_value([]).run()
    at.multiselect(key="explorer_folds").set_value([-1]).run()  # the excluded pair
    assert sorted(_thumbnails(at)) == sorted(CONFLICT_PAIR)
    at.multiselect(key="explorer_classes").set_value(["Normal_Sperm"]).run()
    assert _match_count(at) == 0 and any("No image matches" in i.value for i in at.info)
    assert not at.exception


def test_pagination(empty_env):
    at = _run("smids")
    first = _thumbnails(at)
    at.number_input(key="explorer_page").set_value(3).run()
    last = _thumbnails(at)
    assert len(first) == 24 and len(last) == 14 and not set(first) & set(last)
    at.selectbox(key="explorer_per_page").set_value(96).run()  # page 3 no longer exists: clamped to 1
    assert not at.exception
    assert at.number_input(key="explorer_page").value == 1 and len(_thumbnails(at)) == 62


def test_selecting_the_conflicting_pair_shows_both_labels(app_env):
    at = _run("smids")
    at.selectbox(key="explorer_image").set_value(CONFLICT_PAIR[1]).run()
    assert not at.exception
    meta = _metadata(at)
    assert meta["file"] == CONFLICT_PAIR[1]
    assert meta["class (folder)"] == "Non-sperm (Non-Sperm)"
    assert meta["fold"] == "excluded" and meta["excluded"] == "conflicting labels"
    assert meta["size"] == "156 × 181 px" and meta["format (by content)"] == "BMP"
    assert "2 files" in meta["duplicate group"]
    (warning,) = [w.value for w in at.warning if "Conflicting labels" in w.value]
    assert CONFLICT_PAIR[0] in warning and "labelled Abnormal" in warning
    assert any("Excluded images are not evaluated" in c.value for c in at.caption)
    assert at.image[-1].captions == [CONFLICT_PAIR[1]]


def test_view_button_selects_the_image(app_env):
    at = _run("hushem")
    target = _thumbnails(at)[5]
    at.button(key=f"view::{target}").click().run()
    assert not at.exception
    assert at.selectbox(key="explorer_image").value == target
    meta = _metadata(at)
    assert meta["file"] == target and meta["fold"].startswith("fold ") and meta["excluded"] == "no"
    assert not [w for w in at.warning if "Conflicting" in w.value]
    (oof,) = [d.value for d in at.dataframe if "prediction" in d.value.columns]
    assert oof["correct"].isin(["✓", "✗"]).all()  # every non-excluded sample image was evaluated


def test_bad_data_dir_is_one_clear_error(empty_env, monkeypatch, tmp_path):
    monkeypatch.setenv("SPERM_DATA_DIR", str(tmp_path / "nowhere"))
    at = _run("smids")
    assert not at.exception
    assert len(at.error) == 1 and "SPERM_DATA_DIR" in at.error[0].value


@pytest.mark.shared_data
def test_full_smids_gallery_is_paged(smids_full, empty_env, monkeypatch):
    monkeypatch.setenv("SPERM_DATA_DIR", str(smids_full.parent))
    at = _run("smids")
    assert not at.exception
    assert _match_count(at) == 3000 and len(_thumbnails(at)) == 24
    at.multiselect(key="explorer_folds").set_value([-1]).run()
    assert _match_count(at) == 8  # the four conflicting-label pairs
