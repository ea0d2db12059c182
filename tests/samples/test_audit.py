"""Roles enforced by the service, the append-only audit log, soft deletes with restore and purge, and actions
bound to ids and a version (the issue's scenario: a review on a sample deleted and saved again under its name)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select

from spermlib.samples import models as m
from spermlib.samples import service
from spermlib.samples.access import AccessDenied
from spermlib.samples.db import SampleStoreError
from spermlib.samples.service import NewImage, SampleChanged
from tests.samples.conftest import ADMIN, REVIEWER, SMIDS_ABNORMAL, SMIDS_NORMAL, VIEWER, save_smids, verdict


def _audit_count(store) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(m.AuditEntry)).scalar()


def _mutations(store, actor, name: str, file_name: str) -> dict:
    """Each mutation of the service, as ``actor`` on sample ``name``, by action."""
    return {
        "save": lambda: save_smids(store, "another", ["Normal_Sperm"], actor=actor),
        "review": lambda: store.review(actor, store.image_ref(name, file_name), "Abnormal"),
        "tag": lambda: store.tag_image(actor, store.image_ref(name, file_name), "blurry"),
        "untag": lambda: store.untag_image(actor, store.image_ref(name, file_name), "blurry"),
        "tag dataset": lambda: store.tag_dataset_image(actor, "smids", "Normal_Sperm/a.bmp", "blurry"),
        "untag dataset": lambda: store.untag_dataset_image(actor, "smids", "Normal_Sperm/a.bmp", "blurry"),
        "export": lambda: store.export_csv(actor, name),
        "audit": lambda: store.audit_log(actor),
        "audit export": lambda: store.audit_csv(actor),
        "deleted list": lambda: store.deleted_samples(actor),
        "delete": lambda: store.delete_sample(actor, store.sample_ref(name)),
        "restore": lambda: store.restore_sample(actor, store.sample_ref(name).sample_id),
        "purge": lambda: store.purge_sample(actor, name),
    }


REVIEWER_MAY = {"save", "review", "tag", "untag", "tag dataset", "untag dataset"}


@pytest.mark.parametrize("actor,allowed", [(VIEWER, set()), (REVIEWER, REVIEWER_MAY)], ids=["viewer", "reviewer"])
def test_the_service_refuses_what_the_role_may_not_do(store, actor, allowed):
    (file_name,) = save_smids(store, "batch", ["Normal_Sperm"])
    entries = _audit_count(store)
    for action, call in _mutations(store, actor, "batch", file_name).items():
        if action in allowed:
            call()
            continue
        with pytest.raises(AccessDenied, match=f"{actor.role.name.lower()}.* may not"):
            call()
    assert _audit_count(store) == entries + len(allowed)  # a refused call changes nothing, logs nothing
    assert [s.name for s in store.list_samples()] == (["another", "batch"] if allowed else ["batch"])


def test_every_mutation_appends_one_audit_entry_with_who_what_and_ids(store):
    (file_name,) = save_smids(store, "batch", ["Normal_Sperm"])
    ref = store.image_ref("batch", file_name)
    store.review(REVIEWER, ref, "Abnormal", "bent neck")
    store.tag_image(REVIEWER, store.image_ref("batch", file_name), "blurry")
    store.untag_image(REVIEWER, store.image_ref("batch", file_name), "blurry")
    store.export_csv(ADMIN, "batch")
    store.delete_sample(ADMIN, store.sample_ref("batch"))
    store.restore_sample(ADMIN, ref.sample_id)
    store.delete_sample(ADMIN, store.sample_ref("batch"))
    store.purge_sample(ADMIN, "batch")
    log = list(reversed(store.audit_log(ADMIN)))  # oldest first
    assert [e.action for e in log] == ["save", "review", "tag", "untag", "export", "delete", "restore", "delete",
                                       "purge"]
    assert {e.sample_id for e in log} == {ref.sample_id}
    assert [e.image_id for e in log[1:4]] == [ref.image_id] * 3
    review = log[1]
    assert (review.actor_subject, review.actor_display) == (REVIEWER.subject, "alice <alice@lab.org>")
    assert review.details["label"] == "Abnormal_Sperm" and review.details["comment"] == "bent neck"
    assert review.created_at.tzinfo is not None
    assert log[-1].details["files"] == [file_name] and log[-1].details["reviews"] == 1


def test_the_audit_log_survives_purge_and_exports_as_csv(store):
    (file_name,) = save_smids(store, "batch", ["Normal_Sperm"])
    store.review(REVIEWER, store.image_ref("batch", file_name), "Abnormal")
    store.delete_sample(ADMIN, store.sample_ref("batch"))
    before = store.audit_log(ADMIN)
    store.purge_sample(ADMIN, "batch")
    after = store.audit_log(ADMIN)
    assert after[1:] == before and after[0].action == "purge"  # nothing removed or changed, one appended
    table = pd.read_csv(io.StringIO(store.audit_csv(ADMIN)), keep_default_na=False)
    assert table["action"].tolist() == ["purge", "delete", "review", "save"]
    assert store.audit_log(ADMIN)[0].details == {"what": "audit log", "rows": 4}  # the export is logged too


def test_no_code_path_updates_or_deletes_an_audit_entry(store):
    source = Path(service.__file__).read_text()
    assert not re.search(r"(update|delete)\(\s*m\.AuditEntry", source)
    assert source.count("m.AuditEntry(") == 1  # entries are only ever constructed (in _audit)
    save_smids(store, "batch", ["Normal_Sperm"])
    from sqlalchemy.orm import Session

    with Session(store.engine) as session:  # and the ORM refuses it even if a future change tried
        entry = session.scalars(select(m.AuditEntry)).first()
        entry.action = "forged"
        with pytest.raises(m.AuditLogIsAppendOnly):
            session.flush()


def test_reviews_and_tags_record_the_stable_subject_beside_the_display_name(store):
    (file_name,) = save_smids(store, "batch", ["Normal_Sperm"])
    review = store.review(REVIEWER, store.image_ref("batch", file_name), "Normal")
    tag = store.tag_image(REVIEWER, store.image_ref("batch", file_name), "blurry")
    assert (review.reviewer, review.reviewer_subject) == ("alice <alice@lab.org>", REVIEWER.subject)
    assert (tag.author, tag.author_subject) == ("alice <alice@lab.org>", REVIEWER.subject)
    with store.engine.connect() as conn:
        assert conn.execute(select(m.Review.reviewer_email)).scalar() == "alice@lab.org"


def test_a_deleted_sample_is_hidden_until_an_admin_restores_it(store):
    (file_name,) = save_smids(store, "batch", ["Normal_Sperm"])
    ref = store.sample_ref("batch")
    store.delete_sample(ADMIN, ref)
    assert store.list_samples() == []
    with pytest.raises(SampleStoreError, match="no sample named 'batch'"):
        store.sample("batch")
    with pytest.raises(SampleStoreError, match="no sample named 'batch'"):
        store.image_ref("batch", file_name)
    (gone,) = store.deleted_samples(ADMIN)
    assert (gone.id, gone.deleted_by) == (ref.sample_id, ADMIN.subject) and gone.deleted_at is not None
    save_smids(store, "batch", ["Abnormal_Sperm"])  # the name is free again
    with pytest.raises(SampleStoreError, match="already exists"):
        store.restore_sample(ADMIN, ref.sample_id)
    store.delete_sample(ADMIN, store.sample_ref("batch"))
    with pytest.raises(SampleStoreError, match="is not deleted: delete it first|no deleted sample"):
        store.purge_sample(ADMIN, "never there")
    restored = store.restore_sample(ADMIN, ref.sample_id)
    assert (restored.name, restored.n_images, restored.deleted_at) == ("batch", 1, None)
    assert [i.file_name for i in store.sample("batch").images] == [file_name]


def test_purge_needs_a_deleted_sample(store):
    save_smids(store, "batch", ["Normal_Sperm"])
    with pytest.raises(SampleStoreError, match="'batch' is not deleted: delete it first"):
        store.purge_sample(ADMIN, "batch")
    assert [s.name for s in store.list_samples()] == ["batch"]


def test_a_review_on_a_sample_deleted_and_saved_again_is_refused(store):
    """The issue's scenario: A opens run1; run1 is deleted and a new run1 saved with another image under the
    same file name; A's click is refused and the new sample carries no review."""
    normal, abnormal = SMIDS_NORMAL[0], SMIDS_ABNORMAL[0]
    store.save_sample(ADMIN, "run1", "smids", "effnet_cbam",
                      [NewImage("image_001.bmp", normal.read_bytes(), verdict("Normal_Sperm"))], {}, code_version="t")
    opened = store.sample("run1")  # session A's page
    seen_by_a = opened.image_ref(opened.images[0])
    store.delete_sample(ADMIN, store.sample_ref("run1"))
    store.save_sample(ADMIN, "run1", "smids", "effnet_cbam",
                      [NewImage("image_001.bmp", abnormal.read_bytes(), verdict("Abnormal_Sperm"))], {},
                      code_version="t")
    with pytest.raises(SampleChanged, match="sample 'run1' was changed or deleted since you opened it; reload"):
        store.review(REVIEWER, seen_by_a, "Abnormal")
    with pytest.raises(SampleChanged):
        store.tag_image(REVIEWER, seen_by_a, "blurry")
    with pytest.raises(SampleChanged):
        store.delete_sample(ADMIN, opened.summary.ref)
    (image,) = store.sample("run1").images
    assert image.reviews == () and image.tags == ()
    assert image.sha256 == service.sha256_of(abnormal.read_bytes())


def test_an_action_on_an_older_version_is_refused(store):
    files = save_smids(store, "batch", ["Normal_Sperm", "Abnormal_Sperm"])
    opened = store.sample("batch")
    store.review(REVIEWER, opened.image_ref(opened.images[0]), "Abnormal")  # bumps the version
    with pytest.raises(SampleChanged, match="reload"):
        store.review(REVIEWER, opened.image_ref(opened.images[1]), "Normal")
    reopened = store.sample("batch")
    assert reopened.summary.version == opened.summary.version + 1
    store.review(REVIEWER, reopened.image_ref(reopened.images[1]), "Normal")
    assert [len(store.history("batch", f)) for f in files] == [1, 1]
    other = reopened.image_ref(reopened.images[0])
    with pytest.raises(SampleChanged):  # an image id of another sample is refused too
        save_smids(store, "other", ["Normal_Sperm"])
        fresh = store.sample_ref("other")
        store.review(REVIEWER, type(other)(fresh.sample_id, fresh.version, "other", other.image_id, "x"), "Normal")
