"""Alembic environment of the samples store, run programmatically by ``spermlib.samples.db.upgrade``.

The connection comes from the caller (``config.attributes["connection"]``), so no alembic.ini or URL
lives here; ``alembic -x url=sqlite:///file.db`` from a shell is supported for developers writing a
new revision (``alembic -c <ini with script_location = spermlib/samples/migrations> revision -m …``).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from spermlib.samples.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:
    # render_as_batch: SQLite cannot ALTER most things; batch mode rebuilds the table instead.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    with create_engine(url).connect() as conn:
        _run(conn)
