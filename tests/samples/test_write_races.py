"""Writers that read and then insert the same row at once (the same image saved into several samples): on
either backend they queue, and none fails on a unique constraint — PostgreSQL as SQLite."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from spermlib.samples.db import POSTGRESQL_WRITE_LOCK, SampleStoreError
from spermlib.samples.service import SampleStore
from tests.samples.conftest import run_at_once, save_smids

N_WRITERS = 8


def test_eight_samples_of_the_same_images_saved_at_once(store):
    start, errors = threading.Barrier(N_WRITERS), []

    def save(k: int) -> None:
        start.wait(timeout=60)
        try:
            save_smids(store, f"batch {k}", ["Normal_Sperm", "Abnormal_Sperm"])
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    run_at_once(save, N_WRITERS)
    assert errors == []
    assert sorted(s.name for s in store.list_samples()) == [f"batch {k}" for k in range(N_WRITERS)]
    assert {i.sha256 for k in range(N_WRITERS) for i in store.sample(f"batch {k}").images} == {
        i.sha256 for i in store.sample("batch 0").images}  # each image stored once, shared by every sample


def test_a_postgresql_writer_waits_for_another_a_bounded_time_then_gives_one_clear_error(postgres_url):
    store = SampleStore.open(postgres_url, busy_timeout_s=0.3)
    holder = create_engine(postgres_url, poolclass=NullPool)
    with holder.connect() as conn, conn.begin():  # another program's write transaction, still open
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": POSTGRESQL_WRITE_LOCK})
        started = time.monotonic()
        with pytest.raises(SampleStoreError, match="locked by another program"):
            save_smids(store, "batch", ["Normal_Sperm"])
        assert time.monotonic() - started < 3.0
    save_smids(store, "batch", ["Normal_Sperm"])  # once the other ends, it goes through
    store.close()
