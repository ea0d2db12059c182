"""The Samples page and the other pages' saving: Classify's "Save as sample", the review queue (ordered by
need, one click per review, history kept), the report, delete with confirmation, tags in the Dataset
explorer; and a broken database costs one st.error while Classify still classifies."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from spermlib.samples.db import DB_URL_ENV
from spermlib.samples.service import SampleStore
from tests.samples.conftest import save_smids

APP = str(Path(__file__).resolve().parents[2] / "app.py")
SAMPLES_PAGE = "views/samples.py"
NORMAL_SAMPLE = "Normal_Sperm/Boya_11435.bmp"


def _open(page: str, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180).run()
    for key, value in state.items():
        at.session_state[key] = value
    return at.switch_page(page).run()


def _button(at: AppTest, label: str):
    (button,) = [b for b in at.button if b.label == label]
    return button


def _store() -> SampleStore:
    import os

    return SampleStore.open(os.environ[DB_URL_ENV])


def test_without_samples_the_page_says_how_to_make_one(app_env):
    at = _open(SAMPLES_PAGE)
    assert not at.exception, at.exception
    assert not at.error
    assert any("No samples yet" in i.value for i in at.info)


def test_review_queue_is_ordered_by_need_and_one_click_records_a_review(app_env):
    store = _store()
    files = save_smids(store, "confident", ["Normal_Sperm", "Abnormal_Sperm"], confidence=0.95)
    (odd,) = save_smids(store, "odd", ["Abnormal_Sperm"], in_domain=False)  # another sample, shown second
    at = _open(SAMPLES_PAGE, samples_name="confident")
    assert not at.exception, at.exception
    review_buttons = [b for b in at.button if b.key and b.key.startswith("review::")]
    assert review_buttons and all(b.disabled for b in review_buttons)  # no reviewer yet: nothing can be clicked
    at.text_input(key="samples_reviewer").input("Dr Alice").run()
    at.button(key=f"review::{files[1]}::Abnormal_Sperm").click().run()  # accept the model's label
    assert not at.exception, at.exception
    at.button(key=f"review::{files[0]}::Abnormal_Sperm").click().run()  # correct it
    assert any("Every image of this sample has been reviewed" in s.value for s in at.success)
    at.toggle(key="samples_show_reviewed").set_value(True).run()
    assert [(r.label, r.reviewer) for r in store.history("confident", files[0])] == [("Abnormal_Sperm", "Dr Alice")]
    assert [r.label for r in store.history("confident", files[1])] == ["Abnormal_Sperm"]
    assert sum("History (1 review)" in e.label for e in at.expander) == 2

    at.selectbox(key="samples_name").set_value("odd").run()
    assert any("out of domain" in md.value for md in at.markdown)
    assert store.history("odd", odd) == []


def test_report_and_delete_with_confirmation(app_env):
    store = _store()
    files = save_smids(store, "batch", ["Normal_Sperm", "Abnormal_Sperm"])
    store.review("batch", files[0], "Abnormal", "Dr Alice")
    at = _open(SAMPLES_PAGE, samples_name="batch")
    _button(at, "Prepare the report (PDF and HTML)").click().run()
    assert not at.exception, at.exception
    pdf, page = at.session_state[f"samples_report::batch::{(1, 0)}"]  # one review of the first image
    assert pdf.startswith(b"%PDF") and "reviewed Abnormal by Dr Alice" in page
    assert _button(at, "Delete sample").disabled
    at.checkbox(key="samples_confirm_delete::batch").check().run()
    _button(at, "Delete sample").click().run()
    assert not at.exception, at.exception
    assert store.list_samples() == []
    assert any("No samples yet" in i.value for i in at.info)


def test_classify_saves_what_it_shows_as_a_sample(app_env):
    at = _open("views/classify.py", classify_dataset="smids", classify_samples=[NORMAL_SAMPLE])
    assert not at.exception, at.exception
    at.text_input(key="classify_sample_name").input("run 1")
    _button(at, "Save as sample").click().run()
    assert not at.exception, at.exception
    assert any("Saved sample 'run 1'" in s.value for s in at.success)
    (image,) = _store().sample("run 1").images
    assert image.file_name == NORMAL_SAMPLE
    assert image.predictions["effnet_cbam"].model.startswith("fold-")  # the fold model that never saw it
    _button(at, "Save as sample").click().run()  # the same name again: one clear error, nothing overwritten
    assert any("already exists" in e.value for e in at.error)


def test_dataset_explorer_tags_an_image(app_env):
    at = _open("views/explorer.py", explorer_dataset="smids")
    assert not at.exception, at.exception
    image = at.selectbox(key="explorer_image").value
    at.text_input(key="explorer_tags_author").input("Dr Bob")
    at.selectbox(key="explorer_tags_tag").set_value("label suspect")
    at.text_input(key="explorer_tags_comment").input("looks tapered")
    _button(at, "Add tag").click().run()
    assert not at.exception, at.exception
    (tag,) = _store().dataset_tags("smids")
    assert (tag.path, tag.tag, tag.comment, tag.author) == (image, "label suspect", "looks tapered", "Dr Bob")
    (table,) = [d.value for d in at.dataframe if "tag" in d.value.columns]
    assert table["tag"].tolist() == ["label suspect"]


def test_a_corrupt_database_is_one_error_and_classify_still_classifies(app_env, tmp_path, monkeypatch):
    bad = tmp_path / "corrupt.db"
    bad.write_text("not a database " * 500)
    monkeypatch.setenv(DB_URL_ENV, f"sqlite:///{bad}")
    at = _open(SAMPLES_PAGE)
    assert not at.exception, at.exception
    (error,) = at.error
    assert "not a readable SQLite database" in error.value
    at = _open("views/classify.py", classify_dataset="smids", classify_samples=[NORMAL_SAMPLE])
    assert not at.exception and not at.error
    assert any("Boya_11435.bmp" in md.value and "→" in md.value for md in at.markdown)  # the verdict is shown
    at.text_input(key="classify_sample_name").input("run 1")
    _button(at, "Save as sample").click().run()
    (error,) = at.error
    assert "Saved samples, reviews and tags are unavailable" in error.value


def test_a_sample_image_is_tagged_from_the_queue(app_env):
    store = _store()
    (file_name,) = save_smids(store, "batch", ["Normal_Sperm"])
    at = _open(SAMPLES_PAGE, samples_name="batch")
    at.text_input(key="samples_reviewer").input("Dr Alice").run()
    at.selectbox(key=f"tag::{file_name}::tag").set_value("two cells")
    at.text_input(key=f"tag::{file_name}::comment").input("overlapping")
    _button(at, "Add tag").click().run()
    assert not at.exception, at.exception
    (tag,) = store.sample("batch").images[0].tags
    assert (tag.tag, tag.comment, tag.author) == ("two cells", "overlapping", "Dr Alice")
    assert any(":blue-badge[two cells]" in md.value for md in at.markdown)
