"""The database layer, on SQLite and PostgreSQL: migrations from empty, each backend's settings, and one clear
error for a locked, corrupt, newer, unreachable or unusable database."""

from __future__ import annotations

import time
from contextlib import contextmanager
from datetime import datetime, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

from spermlib.errors import SpermlibError
from spermlib.samples import db as samples_db
from spermlib.samples.db import (
    SampleStoreError,
    default_db_url,
    known_revisions,
    make_engine,
    open_engine,
    schema_revisions,
    writer,
)
from spermlib.samples.models import Base
from spermlib.samples.service import SampleStore
from tests.postgres import free_port
from tests.samples.conftest import ADMIN, save_smids


def test_a_fresh_database_is_migrated_to_the_models(db_url):
    engine = open_engine(db_url)
    current, heads = schema_revisions(engine)
    assert current == heads and heads <= known_revisions()
    assert set(inspect(engine).get_table_names()) >= {"samples", "images", "sample_images", "predictions",
                                                      "reviews", "sample_image_tags", "dataset_image_tags",
                                                      "audit_log"}
    with engine.connect() as conn:  # the shipped migrations build exactly what the models declare
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        if engine.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0
        else:  # a writer waits a bounded time for another, as SQLite's busy timeout
            assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == f"{int(samples_db.BUSY_TIMEOUT_S)}s"
    engine.dispose()
    open_engine(db_url).dispose()  # opening again finds it current and changes nothing


def test_default_database_comes_from_the_environment(db_url):
    assert default_db_url() == db_url


def test_a_database_from_a_newer_version_is_refused(db_url):
    open_engine(db_url).dispose()
    with _plain_engine(db_url).begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(SampleStoreError, match="newer version") as err:
        open_engine(db_url)
    assert isinstance(err.value, SpermlibError)


def test_a_corrupt_file_gives_one_clear_error(tmp_path):
    bad = tmp_path / "samples.db"
    bad.write_bytes(b"this is not an SQLite database, just some text\n" * 100)
    with pytest.raises(SampleStoreError, match="not a readable SQLite database"):
        open_engine(f"sqlite:///{bad}")


def _plain_engine(url: str):
    """Another program's connection: none of spermlib's settings."""
    return create_engine(url, poolclass=NullPool)


def test_an_unreachable_server_gives_one_clear_error_without_the_password():
    port = free_port()  # nothing listens on it
    with pytest.raises(SampleStoreError, match="cannot be used") as err:
        open_engine(f"postgresql+psycopg://someone:hunter2@127.0.0.1:{port}/spermlib")
    assert "hunter2" not in str(err.value) and f"someone:***@127.0.0.1:{port}/spermlib" in str(err.value)


@contextmanager
def _another_writer(db_url: str):
    """Another program's connection holding an open write transaction (an uncommitted insert)."""
    engine = make_engine(db_url)
    conn = writer(engine).connect()
    trans = conn.begin()
    conn.execute(text("INSERT INTO dataset_image_tags (dataset, path, tag, author, author_subject, created_at) "
                      "VALUES ('smids', 'x.bmp', 'held', 'other', 'other', :now)"), {"now": datetime.now(timezone.utc)})
    try:
        yield
    finally:
        trans.rollback()
        conn.close()
        engine.dispose()


def test_readers_never_wait_for_a_writer(db_url):
    """With another connection holding a write transaction, listing and reading a sample answer at once."""
    store = SampleStore.open(db_url)
    save_smids(store, "batch", ["Normal_Sperm"])
    with _another_writer(db_url):
        started = time.monotonic()
        assert [s.name for s in store.list_samples()] == ["batch"]
        assert len(store.sample("batch").images) == 1
        assert store.dataset_tags("smids") == []  # the other's uncommitted row is not seen
        assert time.monotonic() - started < 1.0
    store.close()


def test_a_writer_waits_for_another_a_bounded_time_then_gives_one_clear_error(db_url):
    store = SampleStore.open(db_url, busy_timeout_s=0.3)
    with _another_writer(db_url):
        started = time.monotonic()
        with pytest.raises(SampleStoreError, match="locked by another program"):
            store.tag_dataset_image(ADMIN, "smids", "y.bmp", "blurry")
        assert time.monotonic() - started < 3.0
    store.tag_dataset_image(ADMIN, "smids", "y.bmp", "blurry")  # once the other commits or ends, it goes through
    store.close()


def test_an_unusable_url_is_a_user_error():
    with pytest.raises(SampleStoreError, match="not a usable SQLAlchemy URL"):
        open_engine("nosuchdialect://somewhere/db")


def test_queries_are_parameterised(store):
    """A name full of SQL is stored and found as plain text (the ORM binds it as a parameter)."""
    evil = "x'); DROP TABLE samples; --"
    save_smids(store, evil, ["Normal_Sperm"])
    assert [s.name for s in store.list_samples()] == [evil]
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM samples")).scalar() == 1
