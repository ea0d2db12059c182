"""The database layer, on SQLite and PostgreSQL: migrations from empty, each backend's settings, and one clear
error for a locked, corrupt, newer, unreachable or unusable database."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from spermlib.errors import SpermlibError
from spermlib.samples import db as samples_db
from spermlib.samples.db import SampleStoreError, default_db_url, known_revisions, open_engine, schema_revisions
from spermlib.samples.models import Base
from tests.postgres import free_port


def test_a_fresh_database_is_migrated_to_the_models(db_url):
    engine = open_engine(db_url)
    current, heads = schema_revisions(engine)
    assert current == heads and heads <= known_revisions()
    assert set(inspect(engine).get_table_names()) >= {"samples", "images", "sample_images", "predictions",
                                                      "reviews", "sample_image_tags", "dataset_image_tags"}
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


@contextmanager
def _another_program_locks(url: str) -> Iterator[None]:
    """Another program holds the write lock: of the whole file (SQLite), of the schema table (PostgreSQL)."""
    if make_url(url).get_backend_name() == "sqlite":
        holder = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    with _plain_engine(url).connect() as conn, conn.begin():
        conn.execute(text("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE"))
        yield


def test_a_locked_database_gives_one_clear_error(db_url):
    open_engine(db_url).dispose()
    with _another_program_locks(db_url), pytest.raises(SampleStoreError, match="locked by another program"):
        open_engine(db_url, busy_timeout_s=0.2)


def test_an_unreachable_server_gives_one_clear_error_without_the_password():
    port = free_port()  # nothing listens on it
    with pytest.raises(SampleStoreError, match="cannot be used") as err:
        open_engine(f"postgresql+psycopg://someone:hunter2@127.0.0.1:{port}/spermlib")
    assert "hunter2" not in str(err.value) and f"someone:***@127.0.0.1:{port}/spermlib" in str(err.value)


def test_an_unusable_url_is_a_user_error():
    with pytest.raises(SampleStoreError, match="not a usable SQLAlchemy URL"):
        open_engine("nosuchdialect://somewhere/db")


def test_queries_are_parameterised(store):
    """A name full of SQL is stored and found as plain text (the ORM binds it as a parameter)."""
    from tests.samples.conftest import save_smids

    evil = "x'); DROP TABLE samples; --"
    save_smids(store, evil, ["Normal_Sperm"])
    assert [s.name for s in store.list_samples()] == [evil]
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM samples")).scalar() == 1
