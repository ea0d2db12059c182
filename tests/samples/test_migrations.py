"""The migration to the audit-trail schema loses nothing a user saved: a database of the 0001 release (built
with the 0001 schema and rows inserted as that release wrote them) is upgraded to the newest schema."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa

from spermlib.samples.access import Role, local_actor
from spermlib.samples.db import make_engine, open_engine, schema_revisions, upgrade, writer
from spermlib.samples.service import SampleStore

THEN = datetime(2026, 11, 26, 9, 30, tzinfo=timezone.utc)

# the 0001 tables as that release wrote them (only the columns it had)
SAMPLES = sa.table("samples", sa.column("id"), sa.column("name"), sa.column("dataset"), sa.column("arch"),
                   sa.column("checkpoints", sa.JSON), sa.column("code_version"),
                   sa.column("created_at", sa.DateTime(timezone=True)))
IMAGES = sa.table("images", sa.column("id"), sa.column("sha256"), sa.column("size_bytes"), sa.column("width"),
                  sa.column("height"), sa.column("data", sa.LargeBinary))
LINKS = sa.table("sample_images", sa.column("id"), sa.column("sample_id"), sa.column("image_id"),
                 sa.column("file_name"), sa.column("position"))
PREDICTIONS = sa.table("predictions", sa.column("sample_image_id"), sa.column("arch"), sa.column("label"),
                       sa.column("confidence"), sa.column("probabilities", sa.JSON),
                       sa.column("fold_labels", sa.JSON), sa.column("agreement"), sa.column("model"),
                       sa.column("in_domain", sa.Boolean), sa.column("domain_score"))
REVIEWS = sa.table("reviews", sa.column("sample_image_id"), sa.column("label"), sa.column("reviewer"),
                   sa.column("comment"), sa.column("created_at", sa.DateTime(timezone=True)))
SAMPLE_TAGS = sa.table("sample_image_tags", sa.column("sample_image_id"), sa.column("tag"), sa.column("comment"),
                       sa.column("author"), sa.column("created_at", sa.DateTime(timezone=True)))
DATASET_TAGS = sa.table("dataset_image_tags", sa.column("dataset"), sa.column("path"), sa.column("tag"),
                        sa.column("comment"), sa.column("author"), sa.column("created_at", sa.DateTime(timezone=True)))


def _release_0001_database(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine, "0001")
    with writer(engine).begin() as conn:
        conn.execute(SAMPLES.insert(), [
            {"id": 1, "name": "run1", "dataset": "smids", "arch": "effnet_cbam", "code_version": "spermlib 0.1",
             "checkpoints": {"effnet_cbam": {"folds": [0], "weights_sha256": {"0": "ab" * 32}}}, "created_at": THEN},
            {"id": 2, "name": "run2", "dataset": "smids", "arch": "effnet_cbam", "code_version": "spermlib 0.1",
             "checkpoints": {}, "created_at": THEN}])
        conn.execute(IMAGES.insert(), [{"id": 1, "sha256": "1" * 64, "size_bytes": 3, "width": 1, "height": 1,
                                        "data": b"abc"}])
        conn.execute(LINKS.insert(), [{"id": 1, "sample_id": 1, "image_id": 1, "file_name": "a.bmp", "position": 0},
                                      {"id": 2, "sample_id": 2, "image_id": 1, "file_name": "a.bmp", "position": 0}])
        conn.execute(PREDICTIONS.insert(), [{"sample_image_id": 1, "arch": "effnet_cbam", "label": "Normal_Sperm",
                                             "confidence": 0.9, "probabilities": {"Normal_Sperm": 0.9},
                                             "fold_labels": ["Normal_Sperm"], "agreement": 1.0, "model": "ensemble",
                                             "in_domain": True, "domain_score": 0.8}])
        conn.execute(REVIEWS.insert(), [
            {"sample_image_id": 1, "label": "Abnormal_Sperm", "reviewer": "Dr Alice", "comment": "bent neck",
             "created_at": THEN},
            {"sample_image_id": 1, "label": "Normal_Sperm", "reviewer": "Dr Bob", "comment": None, "created_at": THEN}])
        conn.execute(SAMPLE_TAGS.insert(), [{"sample_image_id": 2, "tag": "blurry", "comment": "out of focus",
                                             "author": "Dr Alice", "created_at": THEN}])
        conn.execute(DATASET_TAGS.insert(), [{"dataset": "smids", "path": "Normal_Sperm/x.bmp",
                                              "tag": "label suspect", "comment": None, "author": "Dr Bob",
                                              "created_at": THEN}])
    engine.dispose()


def test_every_row_of_the_0001_release_survives_the_upgrade(db_url):
    _release_0001_database(db_url)
    engine = open_engine(db_url)  # the start-up check upgrades it
    current, heads = schema_revisions(engine)
    assert current == heads and "0001" not in current
    engine.dispose()

    store = SampleStore.open(db_url)
    assert [(s.name, s.n_images, s.n_reviewed, s.version) for s in store.list_samples()] == [
        ("run2", 1, 0, 1), ("run1", 1, 1, 1)]
    (image,) = store.sample("run1").images
    assert [(r.label, r.reviewer, r.reviewer_subject, r.comment, r.created_at) for r in image.reviews] == [
        ("Abnormal_Sperm", "Dr Alice", "legacy:Dr Alice", "bent neck", THEN),
        ("Normal_Sperm", "Dr Bob", "legacy:Dr Bob", None, THEN)]
    assert image.predictions["effnet_cbam"].probabilities == {"Normal_Sperm": 0.9}
    assert store.image_bytes("run2", "a.bmp") == b"abc"
    (tag,) = store.sample("run2").images[0].tags
    assert (tag.tag, tag.comment, tag.author, tag.author_subject) == ("blurry", "out of focus", "Dr Alice",
                                                                      "legacy:Dr Alice")
    (dataset_tag,) = store.dataset_tags("smids")
    assert (dataset_tag.author, dataset_tag.author_subject) == ("Dr Bob", "legacy:Dr Bob")
    assert store.sample("run1").summary.checkpoints["effnet_cbam"]["folds"] == [0]

    # and the upgraded database works as a new one: a review bound to ids, a soft delete, the audit log
    admin = local_actor()
    assert admin.role is Role.ADMIN
    store.review(admin, store.image_ref("run1", "a.bmp"), "Abnormal")
    store.delete_sample(admin, store.sample_ref("run2"))
    assert [s.name for s in store.list_samples()] == ["run1"]
    assert [e.action for e in store.audit_log(admin)] == ["delete", "review"]
    store.close()
