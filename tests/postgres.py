"""A throwaway PostgreSQL server for the tests: its own cluster in a temporary folder, on a free loopback port.

``postgres_server`` (session fixture) finds Debian's ``initdb``/``pg_ctl`` (``$PATH`` or
``/usr/lib/postgresql/<version>/bin``), creates a cluster in a temporary folder, starts it on ``127.0.0.1`` with
its unix socket in that folder and a password (scram-sha-256), creates one database, and stops and removes it
all at the end. PostgreSQL refuses to run as root, so under root the server runs as the ``postgres`` system user
(``runuser``), and the folder is that user's. ``postgres_url`` (per test) empties the database (drops and
recreates its ``public`` schema) and gives a SQLAlchemy URL ``postgresql+psycopg://…``.

Without the binaries (or the driver) the tests that need the server are skipped, with the reason — except
under ``CI=true``, where that is a failure: CI must really test the backend (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVER_USER = "postgres"  # the system user Debian's package creates; the server runs as it under root
DB_USER, DB_PASSWORD, DB_NAME = "spermlib", "test-only-secret", "spermlib_test"
# A throwaway cluster: durability buys nothing here, and fsync on every commit costs seconds per test run.
SERVER_OPTIONS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"


def unavailable(reason: str):
    """Skip the test — or fail it in CI, where the PostgreSQL backend must be tested."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL backend not tested in CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL backend not tested: {reason}")


def find_bin_dir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: on ``$PATH``, else Debian's newest version."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name)
                      if p.parent.name.isdigit() else 0)
    found = [d for d in versions if (d / "initdb").exists() and (d / "pg_ctl").exists()]
    return found[-1] if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    """A running throwaway cluster (see the module docstring)."""

    bin_dir: Path
    root: Path  # the temporary folder: data/, the socket, the log
    port: int
    run_as: str | None  # the system user the server runs as, None: this process's user

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = DB_NAME) -> str:
        return f"postgresql+psycopg://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{self.port}/{database}"

    def _command(self, tool: str, *args: str) -> list[str]:
        prefix = ["runuser", "-u", self.run_as, "--"] if self.run_as else []
        return [*prefix, str(self.bin_dir / tool), *args]

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(self._command(tool, *args), capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = (self.root / "server.log").read_text(errors="replace")[-2000:] if tool == "pg_ctl" else ""
            raise RuntimeError(f"{tool} {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}\n{log}")

    def start(self) -> None:
        password_file = self.root / "password"
        password_file.write_text(DB_PASSWORD + "\n")
        self._own(self.root, password_file)
        self._run("initdb", "-D", str(self.data), "-U", DB_USER, f"--pwfile={password_file}",
                  "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} {SERVER_OPTIONS}"
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-o", options)

    def watch(self, pid: int) -> subprocess.Popen:
        """A watchdog that stops the server and removes its folder once process ``pid`` is gone: a test run
        killed before its teardown (a timeout, Ctrl-C twice) leaves no server behind."""
        stop = shlex.join(self._command("pg_ctl", "stop", "-m", "immediate", "-D", str(self.data)))
        script = f"while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop}; rm -rf {shlex.quote(str(self.root))}"
        return subprocess.Popen(["bash", "-c", script], start_new_session=True, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-m", "immediate", "-D", str(self.data))

    def _own(self, *paths: Path) -> None:
        if self.run_as:
            entry = pwd.getpwnam(self.run_as)
            for p in paths:
                os.chown(p, entry.pw_uid, entry.pw_gid)

    def admin(self, *statements: str, database: str = "postgres") -> None:
        """Run SQL outside a transaction (CREATE DATABASE cannot run inside one)."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=DB_USER, password=DB_PASSWORD,
                             dbname=database, autocommit=True) as conn:
            for sql in statements:
                conn.execute(sql)

    def reset(self, database: str = DB_NAME) -> None:
        """An empty ``database``: connections a previous test left open are ended, its schema dropped."""
        self.admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                   "WHERE datname = current_database() AND pid <> pg_backend_pid()",
                   "DROP SCHEMA IF EXISTS public CASCADE", "CREATE SCHEMA public", database=database)


def _server_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        unavailable(f"PostgreSQL refuses to run as root and there is no {SERVER_USER!r} system user "
                    "(`apt-get install postgresql` creates it)")
    if shutil.which("runuser") is None:
        unavailable("running the server as the postgres user needs `runuser` (util-linux)")
    return SERVER_USER


@contextmanager
def throwaway_server() -> Iterator[PostgresServer]:
    """Start a server in a new temporary folder; stop it and remove the folder on leaving."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        unavailable("initdb/pg_ctl not found on $PATH or in /usr/lib/postgresql/*/bin "
                    "(`apt-get install postgresql`)")
    try:
        import psycopg  # noqa: F401  (the driver of the postgresql+psycopg URLs)
    except ImportError:
        unavailable("the psycopg driver is not installed (`pip install 'psycopg[binary]'`)")
    run_as = _server_user()
    # Not under pytest's tmp_path: its parents are private to root, and the server user must reach the folder.
    root = Path(tempfile.mkdtemp(prefix="spermlib-pg-"))
    server = PostgresServer(bin_dir, root, free_port(), run_as)
    watchdog = server.watch(os.getpid())
    try:
        server.start()
        server.admin(f"CREATE DATABASE {DB_NAME}")
        yield server
    finally:
        watchdog.kill()
        watchdog.wait()
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with throwaway_server() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A SQLAlchemy URL of an empty database on the throwaway server."""
    postgres_server.reset()
    return postgres_server.url()
