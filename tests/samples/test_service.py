"""The samples service on a temporary database: saving, reviews as an audit trail, tags, size limit, export,
purge, and concurrent writers (threads and CLI processes) losing nothing."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select

from spermlib.data.datasets import PROJECT_ROOT
from spermlib.samples import models as m
from spermlib.samples.db import SampleStoreError
from spermlib.samples.service import NewImage, SampleChanged, SampleStore, sha256_of
from spermlib.store.results import prob_column
from tests.samples.conftest import ADMIN, SMIDS_NORMAL, as_reviewer, run_at_once, save_smids, verdict


def _count(store: SampleStore, model) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar()


def test_saved_sample_reads_back(store):
    files = save_smids(store, "batch", ["Normal_Sperm", "Abnormal_Sperm"], in_domain=False)
    (summary,) = store.list_samples()
    assert (summary.name, summary.dataset, summary.n_images, summary.n_reviewed) == ("batch", "smids", 2, 0)
    assert summary.checkpoints["effnet_cbam"]["weights_sha256"] == {"0": "ab" * 32}
    detail = store.sample("batch")
    assert [i.file_name for i in detail.images] == files
    first = detail.images[0]
    assert first.sha256 == sha256_of(SMIDS_NORMAL[0].read_bytes())
    assert first.predictions["effnet_cbam"].label == "Normal_Sperm"
    assert first.predictions["effnet_cbam"].in_domain is False
    assert store.image_bytes("batch", files[1]) == SMIDS_NORMAL[1].read_bytes()


def test_reviews_are_an_audit_trail(store):
    (file_name,) = save_smids(store, "batch", ["Normal_Sperm"])
    first = store.review(as_reviewer("alice"), store.image_ref("batch", file_name), "Abnormal", "bent neck")
    store.review(as_reviewer("bob"), store.image_ref("batch", file_name), "normal_sperm")
    history = store.history("batch", file_name)
    assert [(r.label, r.reviewer, r.comment) for r in history] == [("Abnormal_Sperm", "alice", "bent neck"),
                                                                    ("Normal_Sperm", "bob", None)]
    assert history[0] == first  # the first review is unchanged by the second
    assert history[0].reviewer_subject == "https://idp.example|alice"
    (image,) = store.sample("batch").images
    assert image.final_label("effnet_cbam") == "Normal_Sperm"
    assert _count(store, m.Review) == 2


@pytest.mark.parametrize("label,reviewer,match", [("Tapered", "alice", "not a class of smids"),
                                                  ("Normal", "  ", "reviewer's name must not be empty")])
def test_a_bad_review_is_refused(store, label, reviewer, match):
    (file_name,) = save_smids(store, "batch", ["Normal_Sperm"])
    with pytest.raises(SampleStoreError, match=match):
        store.review(as_reviewer(reviewer), store.image_ref("batch", file_name), label)
    with pytest.raises(SampleStoreError, match="has no image 'other.png'"):
        store.image_ref("batch", "other.png")
    assert _count(store, m.Review) == 0


def test_an_image_over_the_size_limit_is_refused(db_url, tmp_path):
    store = SampleStore.open(db_url, max_image_bytes=50_000)
    big = SMIDS_NORMAL[0]
    assert big.stat().st_size > 50_000
    with pytest.raises(SampleStoreError, match="76 kB is over the samples store's limit of 49 kB per image"):
        image = NewImage(big.name, big.read_bytes(), verdict("Normal_Sperm"))
        store.save_sample(ADMIN, "big", "smids", "effnet_cbam", [image], {}, code_version="test")
    with pytest.raises(SampleStoreError, match="over the samples store's limit"):  # refused before any model runs
        store.add_sample(ADMIN, "big", "smids", "effnet_cbam", [big])
    assert store.list_samples() == [] and _count(store, m.Image) == 0
    store.close()


def test_names_and_files_are_checked(store):
    save_smids(store, "batch", ["Normal_Sperm"])
    with pytest.raises(SampleStoreError, match="already exists"):
        save_smids(store, "batch", ["Normal_Sperm"])
    data = SMIDS_NORMAL[0].read_bytes()
    twice = [NewImage("a.bmp", data, verdict("Normal_Sperm"))] * 2
    with pytest.raises(SampleStoreError, match="a.bmp given twice"):
        store.save_sample(ADMIN, "twice", "smids", "effnet_cbam", twice, {}, code_version="test")
    with pytest.raises(SampleStoreError, match="no sample named 'nope'"):
        store.sample("nope")


def test_images_are_stored_once_and_purged_with_their_last_sample(store):
    save_smids(store, "one", ["Normal_Sperm", "Normal_Sperm"])
    save_smids(store, "two", ["Normal_Sperm"])  # the same first image
    assert _count(store, m.Image) == 2
    store.review(ADMIN, store.image_ref("one", SMIDS_NORMAL[0].name), "Normal")
    store.tag_image(ADMIN, store.image_ref("one", SMIDS_NORMAL[0].name), "blurry")
    assert store.delete_sample(ADMIN, store.sample_ref("one")) == 2
    assert _count(store, m.Image) == 2 and _count(store, m.Review) == 1  # deleted is hidden, not erased
    assert store.purge_sample(ADMIN, "one") == 1
    assert _count(store, m.Image) == 1 and _count(store, m.Review) == 0 and _count(store, m.SampleImageTag) == 0
    assert store.image_bytes("two", SMIDS_NORMAL[0].name) == SMIDS_NORMAL[0].read_bytes()
    store.delete_sample(ADMIN, store.sample_ref("two"))
    store.purge_sample(ADMIN, "two")
    assert _count(store, m.Image) == 0 and _count(store, m.Prediction) == 0 and store.list_samples() == []


def test_tags_on_sample_and_dataset_images(store):
    (file_name,) = save_smids(store, "batch", ["Normal_Sperm"])
    alice, bob = as_reviewer("alice"), as_reviewer("bob")
    store.tag_image(alice, store.image_ref("batch", file_name), "two cells", "overlapping heads")
    store.tag_image(bob, store.image_ref("batch", file_name), "two cells", "clearly two")  # again: new comment
    (tag,) = store.sample("batch").images[0].tags
    assert (tag.tag, tag.comment, tag.author, tag.author_subject) == ("two cells", "clearly two", "bob",
                                                                      bob.subject)
    assert store.untag_image(alice, store.image_ref("batch", file_name), "two cells")
    assert not store.sample("batch").images[0].tags
    store.tag_dataset_image(alice, "smids", "Normal_Sperm/a.bmp", "label suspect", "looks abnormal")
    store.tag_dataset_image(alice, "smids", "Normal_Sperm/a.bmp", "blurry")
    store.tag_dataset_image(alice, "hushem", "01_Normal/image_001.BMP", "blurry")
    assert [(t.path, t.tag) for t in store.dataset_tags("smids")] == [("Normal_Sperm/a.bmp", "blurry"),
                                                                      ("Normal_Sperm/a.bmp", "label suspect")]
    assert store.untag_dataset_image(alice, "smids", "Normal_Sperm/a.bmp", "blurry")
    assert not store.untag_dataset_image(alice, "smids", "Normal_Sperm/a.bmp", "blurry")
    assert [t.tag for t in store.dataset_tags("smids")] == ["label suspect"]


def test_export_has_one_row_per_image(store):
    files = save_smids(store, "batch", ["Normal_Sperm", "Abnormal_Sperm"], confidence=0.7)
    store.review(as_reviewer("alice"), store.image_ref("batch", files[1]), "Normal")
    store.tag_image(as_reviewer("alice"), store.image_ref("batch", files[0]), "blurry")
    table = pd.read_csv(io.StringIO(store.export_csv(ADMIN, "batch").text), keep_default_na=False)
    assert table["file"].tolist() == files
    assert table["model_label_effnet_cbam"].tolist() == ["Normal_Sperm", "Abnormal_Sperm"]
    assert table["reviewed_label"].tolist() == ["", "Normal_Sperm"]
    assert table["reviewer"].tolist() == ["", "alice"]
    assert table["final_label"].tolist() == ["Normal_Sperm", "Normal_Sperm"]
    assert table["tags"].tolist() == ["blurry", ""]
    assert table[prob_column("Normal_Sperm")].tolist() == pytest.approx([0.7, 0.15])


N_WRITERS = 8
REVIEWS_EACH = 5


def _review_until_accepted(store: SampleStore, name: str, file_name: str, reviewer: str, comment: str) -> int:
    """What a user refused as "changed since you opened it" does: reload and click again. Returns the refusals."""
    refused = 0
    while True:
        try:
            store.review(as_reviewer(reviewer), store.image_ref(name, file_name), "Abnormal", comment)
            return refused
        except SampleChanged:
            refused += 1


def test_eight_threads_reviewing_at_once_lose_no_write(store):
    (file_name,) = save_smids(store, "batch", ["Normal_Sperm"])
    start = threading.Barrier(N_WRITERS)
    errors = []

    def reviewer(k: int) -> None:
        start.wait()
        try:
            for j in range(REVIEWS_EACH):
                _review_until_accepted(store, "batch", file_name, f"thread {k}", f"review {j}")
                store.tag_dataset_image(as_reviewer(f"thread {k}"), "smids", f"Normal_Sperm/{k}_{j}.bmp", "blurry")
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    run_at_once(reviewer, N_WRITERS)
    assert errors == []
    history = store.history("batch", file_name)
    assert len(history) == N_WRITERS * REVIEWS_EACH
    assert {(r.reviewer, r.comment) for r in history} == {(f"thread {k}", f"review {j}") for k in range(N_WRITERS)
                                                          for j in range(REVIEWS_EACH)}
    assert len(store.dataset_tags("smids")) == N_WRITERS * REVIEWS_EACH


def test_of_eight_actions_on_one_version_exactly_one_passes(store):
    """Optimistic concurrency holds under contention: the version check and its bump are one statement."""
    (file_name,) = save_smids(store, "batch", ["Normal_Sperm"])
    ref = store.image_ref("batch", file_name)
    start = threading.Barrier(N_WRITERS)
    outcomes = []

    def click(k: int) -> None:
        start.wait()
        try:
            store.review(as_reviewer(f"thread {k}"), ref, "Abnormal")
            outcomes.append("accepted")
        except SampleChanged:
            outcomes.append("refused")

    run_at_once(click, N_WRITERS)
    assert sorted(outcomes) == ["accepted"] + ["refused"] * (N_WRITERS - 1)
    assert len(store.history("batch", file_name)) == 1


def test_eight_cli_processes_reviewing_at_once_lose_no_write(store, db_url):
    (file_name,) = save_smids(store, "batch", ["Normal_Sperm"])
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    procs = [subprocess.Popen([sys.executable, "-m", "spermlib", "samples", "--db", db_url, "review", "batch",
                               file_name, "--label", "Abnormal", "--reviewer", f"process {k}"],
                              cwd=Path(PROJECT_ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for k in range(N_WRITERS)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * N_WRITERS, outputs
    assert sorted(r.reviewer for r in store.history("batch", file_name)) == [f"process {k}" for k in range(N_WRITERS)]
