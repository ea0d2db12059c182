"""The audit trail: soft deletes and versions on samples, who did it by stable subject, the audit log.

Every row saved under 0001 stays: a review's or tag's ``reviewer``/``author`` (a typed name then) is kept as
its display name, and its subject becomes ``legacy:<name>``. A sample's name is unique among live samples
only (a partial unique index), so a deleted sample keeps its name beside a new one.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NAME = sa.String(200)
LIVE = sa.text("deleted_at IS NULL")
# who made each row, by table: (display column kept as it was, the new subject and email columns)
PEOPLE = {"reviews": "reviewer", "sample_image_tags": "author", "dataset_image_tags": "author"}


def _drop_unique_name() -> None:
    """0001 declared ``samples.name`` unique without naming the constraint; each backend named it its way."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        with op.batch_alter_table("samples", naming_convention={"uq": "uq_%(table_name)s_%(column_0_name)s"}) as b:
            b.drop_constraint("uq_samples_name", type_="unique")
        return
    for constraint in sa.inspect(bind).get_unique_constraints("samples"):
        if constraint["column_names"] == ["name"]:
            op.drop_constraint(constraint["name"], "samples", type_="unique")


def _samples() -> None:
    _drop_unique_name()
    with op.batch_alter_table("samples") as b:
        b.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="1"))
        b.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
        b.add_column(sa.Column("deleted_by", NAME, nullable=True))
    op.create_index("uq_samples_live_name", "samples", ["name"], unique=True, sqlite_where=LIVE,
                    postgresql_where=LIVE)


def _people(table: str, person: str) -> None:
    with op.batch_alter_table(table) as b:
        b.add_column(sa.Column(f"{person}_subject", NAME, nullable=True))
        b.add_column(sa.Column(f"{person}_email", NAME, nullable=True))
    # table and column names are this module's constants, never user text
    op.execute(f"UPDATE {table} SET {person}_subject = 'legacy:' || {person}")
    with op.batch_alter_table(table) as b:
        b.alter_column(f"{person}_subject", existing_type=NAME, nullable=False)


def _audit_log() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("actor_subject", NAME, nullable=False),
        sa.Column("actor_display", NAME, nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("sample_id", sa.Integer, nullable=True, index=True),
        sa.Column("image_id", sa.Integer, nullable=True),
        sa.Column("details", sa.JSON, nullable=False),
    )


def upgrade() -> None:
    _samples()
    for table, person in PEOPLE.items():
        _people(table, person)
    _audit_log()


def downgrade() -> None:
    op.drop_table("audit_log")
    for table, person in PEOPLE.items():
        with op.batch_alter_table(table) as b:
            b.drop_column(f"{person}_email")
            b.drop_column(f"{person}_subject")
    op.drop_index("uq_samples_live_name", "samples")
    with op.batch_alter_table("samples") as b:
        b.drop_column("deleted_by")
        b.drop_column("deleted_at")
        b.drop_column("version")
        b.create_unique_constraint("uq_samples_name", ["name"])
