"""Where the samples database is, how to connect to it, and its schema version.

The database is any SQLAlchemy URL: ``$SPERMLIB_DB_URL`` (e.g. ``postgresql+psycopg://user@host/spermlib``),
else an SQLite file ``samples.db`` in the user's data folder (``platformdirs.user_data_dir("spermlib")``).
SQLite runs in WAL mode with a bounded busy timeout. A read runs in a deferred transaction (plain
``BEGIN``): under WAL it sees the last committed state and never waits for a writer. A write runs on
:func:`writer` and starts with ``BEGIN IMMEDIATE``: it takes the write lock up front, so two sessions that
read and then write cannot deadlock on the lock upgrade (SQLite would fail one of them at once, busy timeout
or not), and waits at most the busy timeout for another writer. Together, 8 threads and 8 processes writing
at once lose nothing.
PostgreSQL (``postgresql+psycopg://…``, tested as SQLite is) gets the same: a write transaction first takes a
transaction-scoped advisory lock (``BEGIN IMMEDIATE``'s part), ``lock_timeout`` is the busy timeout, and a
connect timeout makes an unreachable server one error, not a hang.

:func:`open_engine` is the start-up check: it migrates a fresh or older database to the newest schema
(Alembic revisions shipped in ``spermlib/samples/migrations/``) and refuses a locked, corrupt or newer one
with one :class:`SampleStoreError` that says what to do.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from spermlib.errors import SpermlibError

DB_URL_ENV = "SPERMLIB_DB_URL"
DB_FILE = "samples.db"
BUSY_TIMEOUT_S = 10.0  # how long a writer waits for another before giving up (readers never wait)
WRITE_OPTION = "spermlib_write"  # execution option of the connections that write (see writer())
CONNECT_TIMEOUT_S = 10  # how long to wait for a database server to answer (PostgreSQL)
LIBPQ_DRIVERS = ("psycopg", "psycopg2")  # PostgreSQL drivers that take libpq's connection parameters
POSTGRESQL_WRITE_LOCK = 0x5350524D  # the advisory lock key that serialises writers of one database ("SPRM")
MIGRATIONS = Path(__file__).resolve().parent / "migrations"

T = TypeVar("T")


class SampleStoreError(SpermlibError):
    """The samples database cannot be used (locked, corrupt, newer, unreachable) or refused a request."""


def default_db_url() -> str:
    """``$SPERMLIB_DB_URL``, else an SQLite file in the user's data folder (read at call time)."""
    if os.environ.get(DB_URL_ENV):
        return os.environ[DB_URL_ENV]
    import platformdirs  # only when no URL is given

    return f"sqlite:///{Path(platformdirs.user_data_dir('spermlib')) / DB_FILE}"


def describe(url: str) -> str:
    """The database for a message: its file for SQLite, else the URL without its password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or "an in-memory SQLite database"
    return parsed.render_as_string(hide_password=True)


def _advice(url: str) -> str:
    return f"set ${DB_URL_ENV} to another database, or fix {describe(url)}"


def explain_db_error(err: SQLAlchemyError, url: str) -> SampleStoreError:
    """One user-facing sentence for a database failure."""
    text = str(getattr(err, "orig", None) or err).strip()
    where = describe(url)
    if "locked" in text or "busy" in text or "lock timeout" in text:
        return SampleStoreError(f"the samples database {where} is locked by another program (waited "
                                f"{BUSY_TIMEOUT_S:g} s at most); close it or try again")
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return SampleStoreError(f"the samples database {where} is not a readable SQLite database (corrupt or "
                                f"another kind of file); move it away or {_advice(url)}")
    return SampleStoreError(f"the samples database {where} cannot be used ({text.splitlines()[0]}); {_advice(url)}")


def guard_db(url_of: Callable[..., str]):
    """Decorator: a database failure inside the call becomes one :class:`SampleStoreError`."""
    def wrap(fn: Callable[..., T]) -> Callable[..., T]:
        @wraps(fn)
        def inner(*args, **kwargs) -> T:
            try:
                return fn(*args, **kwargs)
            except (DBAPIError, SQLAlchemyError) as err:
                raise explain_db_error(err, url_of(*args, **kwargs)) from None
        return inner
    return wrap


def _sqlite_pragmas(busy_timeout_s: float):
    def on_connect(dbapi_connection, _record) -> None:
        # isolation_level None: the driver issues no BEGIN of its own; on_begin below issues BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")  # an int we computed: no user text
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")  # durable at every checkpoint; WAL's usual setting
        cur.close()
    return on_connect


def _postgresql_options(busy_timeout_s: float) -> dict:
    """PostgreSQL's readers never wait for a writer (MVCC); a statement that waits for another's lock gives up
    after the busy timeout (``lock_timeout``, as SQLite's ``busy_timeout``), and an unreachable server is an
    error after ``CONNECT_TIMEOUT_S`` instead of a hang. ``pool_pre_ping``: a connection the server closed
    (restart, idle timeout) is replaced, not handed out."""
    return {"pool_pre_ping": True,
            "connect_args": {"connect_timeout": CONNECT_TIMEOUT_S,
                             "options": f"-c lock_timeout={int(busy_timeout_s * 1000)}"}}  # our int: no user text


def _postgresql_begin(conn) -> None:
    """One writer at a time, as SQLite's ``BEGIN IMMEDIATE``: the transaction first takes an advisory lock (held
    to its end, waited for at most ``lock_timeout``), so two sessions that read and then insert the same row
    (an image stored once, a tag) queue instead of one failing on the unique constraint."""
    if conn.get_execution_options().get(WRITE_OPTION):  # readers never wait (MVCC)
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({POSTGRESQL_WRITE_LOCK})")  # our constant: no user text


def make_engine(url: str | None = None, busy_timeout_s: float = BUSY_TIMEOUT_S) -> Engine:
    """An engine for ``url`` (default :func:`default_db_url`); SQLite files get WAL, a busy timeout and
    immediate transactions, and their folder is created; PostgreSQL gets a lock timeout and a connect timeout."""
    url = url or default_db_url()
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in LIBPQ_DRIVERS:
            engine = create_engine(url, **_postgresql_options(busy_timeout_s))
            event.listen(engine, "begin", _postgresql_begin)
            return engine
        if parsed.get_backend_name() != "sqlite":
            return create_engine(url, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError, ImportError) as err:
        raise SampleStoreError(f"${DB_URL_ENV}={url!r} is not a usable SQLAlchemy URL ({err})") from None
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": busy_timeout_s})
    event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_s))
    event.listen(engine, "begin", _begin)
    return engine


def _begin(conn) -> None:
    """Writers take the write lock up front; readers begin deferred and never wait (WAL)."""
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION) else "BEGIN")


def writer(engine: Engine) -> Engine:
    """``engine`` for transactions that write (``BEGIN IMMEDIATE`` on SQLite; the same pool)."""
    return engine.execution_options(**{WRITE_OPTION: True})


def _alembic_config(connection):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def schema_revisions(engine: Engine) -> tuple[set[str], set[str]]:
    """(the database's current Alembic revisions, the newest revisions this code knows)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
        heads = set(ScriptDirectory.from_config(_alembic_config(conn)).get_heads())
    return current, heads


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {s.revision for s in ScriptDirectory.from_config(_alembic_config(None)).walk_revisions()}


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (default the newest schema; a fresh one gets every table)."""
    from alembic import command

    with writer(engine).connect() as conn:
        # SQLite alters a table by rebuilding it: with foreign keys on, dropping the old table would cascade
        # to every row that refers to it (a sample's images, reviews, tags). The pragma only works outside a
        # transaction, so it goes straight to the driver before the migration's transaction begins.
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            conn.connection.dbapi_connection.execute("PRAGMA foreign_keys = OFF")
        try:
            with conn.begin():
                command.upgrade(_alembic_config(conn), revision)
                if sqlite and conn.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                    raise SampleStoreError("the schema migration would break references between rows; "
                                           "nothing was changed")
        finally:
            if sqlite:
                conn.connection.dbapi_connection.execute("PRAGMA foreign_keys = ON")


def open_engine(url: str | None = None, busy_timeout_s: float = BUSY_TIMEOUT_S) -> Engine:
    """The start-up check: an engine on a database at the newest schema, or one :class:`SampleStoreError`."""
    url = url or default_db_url()
    engine = make_engine(url, busy_timeout_s)
    try:
        current, heads = schema_revisions(engine)
        unknown = current - known_revisions()
        if unknown:
            raise SampleStoreError(
                f"the samples database {describe(url)} has schema revision {', '.join(sorted(unknown))}, which "
                f"this spermlib does not know (it was written by a newer version): upgrade spermlib, or "
                f"{_advice(url)}")
        if current != heads:
            upgrade(engine)
    except (DBAPIError, SQLAlchemyError) as err:
        engine.dispose()
        raise explain_db_error(err, url) from None
    except SampleStoreError:
        engine.dispose()
        raise
    return engine
