"""The samples store: what users save (classified samples, expert reviews, tags) in a real database.

``db`` (engine, SQLite WAL, Alembic migrations in ``migrations/``, the start-up schema check),
``models`` (the tables), ``service`` (:class:`SampleStore`, the only code that reads or writes them),
``report`` (a sample's PDF/HTML report), ``commands`` (``spermlib samples …``).
"""
