"""The Samples page and the other pages' saving: Classify's "Save as sample", the review queue (ordered by
need, one click per review, history kept), the report, export, delete with confirmation and restore, the
audit log, tags in the Dataset explorer; roles (a viewer and a reviewer see only their controls); a review
on a sample changed meanwhile refused; user text escaped; a writer's lock never empties the page; and a
broken database costs one st.error while Classify still classifies."""

from __future__ import annotations

import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from spermlib.samples.db import DB_URL_ENV, SampleStoreError
from spermlib.samples.service import NewImage, SampleStore
from tests.samples.conftest import ADMIN, REVIEWER, SMIDS_NORMAL, VIEWER, as_reviewer, save_smids, verdict

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
    store.review(as_reviewer("Dr Alice"), store.image_ref("batch", files[0]), "Abnormal")
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
    _button(at, "Restore").click().run()  # the admin's "Deleted samples" section
    assert not at.exception, at.exception
    assert [s.name for s in store.list_samples()] == ["batch"]
    assert [e.action for e in store.audit_log(ADMIN)][:2] == ["restore", "delete"]


def test_export_is_made_on_request_and_logged(app_env):
    store = _store()
    save_smids(store, "batch", ["Normal_Sperm"])
    at = _open(SAMPLES_PAGE, samples_name="batch")
    assert not [b for b in at.get("download_button") if b.proto.label.startswith("Download one row")]
    _button(at, "Prepare the CSV export (one row per image)").click().run()
    assert not at.exception, at.exception
    assert store.audit_log(ADMIN)[0].action == "export"
    assert any("export" in d.value["action"].tolist() for d in at.dataframe if "action" in d.value.columns)


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
    assert tag.author_subject.startswith("local:")  # the typed name is shown; the local user is recorded
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


def _as(monkeypatch, actor) -> None:
    """The session's actor as a configured login would give it (views.auth reads st.secrets and st.user)."""
    import views.annotations
    import views.auth

    monkeypatch.setattr(views.auth, "auth_configured", lambda: True)
    monkeypatch.setattr(views.auth, "current_actor", lambda: actor)  # app.py's login gate
    monkeypatch.setattr(views.annotations, "auth_configured", lambda: True)
    monkeypatch.setattr(views.annotations, "current_actor", lambda: actor)


def _labels(at: AppTest) -> set[str]:
    return {b.label for b in at.button} | {b.proto.label for b in at.get("download_button")} | {
        e.label for e in at.expander} | {p.proto.popover.label for p in at.get("popover")}


def test_a_viewer_sees_no_control_a_viewer_may_not_use(app_env, monkeypatch):
    store = _store()
    save_smids(store, "batch", ["Normal_Sperm"])
    _as(monkeypatch, VIEWER)
    at = _open(SAMPLES_PAGE, samples_name="batch")
    assert not at.exception, at.exception
    assert not [b for b in at.button if b.key and b.key.startswith("review::")]
    labels = _labels(at)
    assert {"Delete this sample", "Tag this image", "Prepare the CSV export (one row per image)",
            "Prepare the whole audit log (CSV)"}.isdisjoint(labels)
    assert "Prepare the report (PDF and HTML)" in labels
    assert not any("Single-user local tool" in c.value for c in at.caption)
    classify = _open("views/classify.py", classify_dataset="smids", classify_samples=[NORMAL_SAMPLE])
    assert not classify.exception and not [b for b in classify.button if b.label == "Save as sample"]


def test_a_reviewer_reviews_but_does_not_delete_export_or_read_the_audit_log(app_env, monkeypatch):
    store = _store()
    (file_name,) = save_smids(store, "batch", ["Normal_Sperm"])
    _as(monkeypatch, REVIEWER)
    at = _open(SAMPLES_PAGE, samples_name="batch")
    assert not at.exception, at.exception
    labels = _labels(at)
    assert {"Delete this sample", "Prepare the CSV export (one row per image)"}.isdisjoint(labels)
    assert not any(sub.value == "Audit log" for sub in at.subheader)
    assert any("Reviewing as" in c.value and "alice" in c.value for c in at.caption)
    at.button(key=f"review::{file_name}::Normal_Sperm").click().run()
    assert not at.exception, at.exception
    (review,) = store.history("batch", file_name)
    assert (review.reviewer_subject, review.reviewer) == (REVIEWER.subject, "alice <alice@lab.org>")


def test_a_click_on_a_sample_deleted_and_saved_again_is_refused(app_env):
    """The issue's scenario on the page: the button carries the ids and version of what was shown."""
    store = _store()
    normal = SMIDS_NORMAL[0]
    image = [NewImage("image_001.bmp", normal.read_bytes(), verdict("Normal_Sperm"))]
    store.save_sample(ADMIN, "run1", "smids", "effnet_cbam", image, {}, code_version="t")
    at = _open(SAMPLES_PAGE, samples_name="run1")
    at.text_input(key="samples_reviewer").input("Dr A").run()
    store.delete_sample(ADMIN, store.sample_ref("run1"))
    other = [NewImage("image_001.bmp", SMIDS_NORMAL[1].read_bytes(), verdict("Normal_Sperm"))]
    store.save_sample(ADMIN, "run1", "smids", "effnet_cbam", other, {}, code_version="t")
    at.button(key="review::image_001.bmp::Abnormal_Sperm").click().run()
    assert not at.exception, at.exception
    assert any("was changed or deleted since you opened it; reload" in e.value for e in at.error)
    assert store.history("run1", "image_001.bmp") == []


def test_user_text_is_escaped_and_the_local_tool_says_so(app_env):
    store = _store()
    evil = "x.bmp` [click](http://evil.example) ![t](http://evil.example/t.png)"
    store.save_sample(ADMIN, "batch", "smids", "effnet_cbam",
                      [NewImage(evil, SMIDS_NORMAL[0].read_bytes(), verdict("Normal_Sperm"))], {}, code_version="t")
    store.review(as_reviewer(":red-badge[OUT OF DOMAIN]"), store.image_ref("batch", evil), "Normal")
    at = _open(SAMPLES_PAGE, samples_name="batch")
    at.toggle(key="samples_show_reviewed").set_value(True).run()
    assert not at.exception, at.exception
    text = " ".join(md.value for md in at.markdown)
    assert "\\[click\\]\\(http" in text and "](http" not in text
    assert ":red-badge[" not in text and "red\\-badge\\[OUT OF DOMAIN\\]" in text
    assert sum("Single-user local tool" in c.value for c in at.caption) == 1


def test_two_uploads_with_one_name_are_saved_under_two_names(app_env):
    from spermlib.dashboard.review import classify_to_sample

    class _Item:  # what the Classify page decodes per upload
        def __init__(self, data):
            self.name, self.data, self.error, self.width, self.height = "image_001.BMP", data, None, 1, 1

    class _Result:
        route = None

        def __init__(self):
            self.prediction = type("P", (), {"label": "Normal_Sperm", "confidence": 0.9, "fold_labels": (),
                                             "agreement": None, "probabilities": {"Normal_Sperm": 0.9}})()

    inputs = [_Item(SMIDS_NORMAL[0].read_bytes()), _Item(SMIDS_NORMAL[1].read_bytes())]
    images, _ = classify_to_sample(inputs, {"effnet_cbam": [_Result(), _Result()]}, {})
    assert [i.file_name for i in images] == ["image_001.BMP", "image_001 (2).BMP"]
    store = _store()
    store.save_sample(ADMIN, "twins", "smids", "effnet_cbam", images, {}, code_version="t")
    assert [i.file_name for i in store.sample("twins").images] == ["image_001.BMP", "image_001 (2).BMP"]


def test_a_writer_holding_the_database_does_not_empty_the_page(app_env, tmp_path):
    import os
    import sqlite3

    store = _store()
    save_smids(store, "batch", ["Normal_Sperm"])
    at = _open(SAMPLES_PAGE, samples_name="batch")
    holder = sqlite3.connect(os.environ[DB_URL_ENV].removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another program writing
    holder.execute("INSERT INTO dataset_image_tags (dataset, path, tag, author, author_subject, created_at) "
                   "VALUES ('smids', 'x', 'held', 'o', 'o', '2026-01-01')")
    try:
        started = time.monotonic()
        at.run()
        elapsed = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not at.exception and not at.error
    assert not any("No samples yet" in i.value for i in at.info)
    assert at.selectbox(key="samples_name").value == "batch"
    assert elapsed < 5.0  # a reader that waited for the writer would take the whole busy timeout


def test_a_failed_list_is_one_error_never_no_samples_yet(app_env, monkeypatch):
    def locked(_self):
        raise SampleStoreError("the samples database x.db is locked by another program")

    monkeypatch.setattr(SampleStore, "list_samples", locked)
    at = _open(SAMPLES_PAGE)
    assert not at.exception, at.exception
    (error,) = at.error
    assert "locked by another program" in error.value
    assert not any("No samples yet" in i.value for i in at.info)
