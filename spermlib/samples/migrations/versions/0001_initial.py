"""The first schema: samples, images by content, predictions, reviews (audit trail) and tags.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

NAME = sa.String(200)


def _created() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def _sample_image_fk() -> sa.Column:
    return sa.Column("sample_image_id", sa.Integer, sa.ForeignKey("sample_images.id", ondelete="CASCADE"),
                     nullable=False, index=True)


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer, primary_key=True)


def _tag_columns() -> list:
    """What both tag tables hold besides the image they tag."""
    return [sa.Column("tag", NAME, nullable=False), sa.Column("comment", sa.Text, nullable=True),
            sa.Column("author", NAME, nullable=False), _created()]


def upgrade() -> None:
    op.create_table(
        "samples",
        _id(),
        sa.Column("name", NAME, nullable=False, unique=True),
        sa.Column("dataset", sa.String(50), nullable=False),
        sa.Column("arch", sa.String(50), nullable=False),
        sa.Column("checkpoints", sa.JSON, nullable=False),
        sa.Column("code_version", sa.String(100), nullable=False),
        _created(),
    )
    op.create_table(
        "images",
        _id(),
        sa.Column("sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("size_bytes", sa.Integer, nullable=False),
        sa.Column("width", sa.Integer, nullable=True),
        sa.Column("height", sa.Integer, nullable=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "sample_images",
        _id(),
        sa.Column("sample_id", sa.Integer, sa.ForeignKey("samples.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id"), nullable=False, index=True),
        sa.Column("file_name", NAME, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.UniqueConstraint("sample_id", "file_name"),
    )
    op.create_table(
        "predictions",
        _id(),
        _sample_image_fk(),
        sa.Column("arch", sa.String(50), nullable=False),
        sa.Column("label", NAME, nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("probabilities", sa.JSON, nullable=False),
        sa.Column("fold_labels", sa.JSON, nullable=False),
        sa.Column("agreement", sa.Float, nullable=True),
        sa.Column("model", NAME, nullable=False),
        sa.Column("in_domain", sa.Boolean, nullable=True),
        sa.Column("domain_score", sa.Float, nullable=True),
        sa.UniqueConstraint("sample_image_id", "arch"),
    )
    op.create_table(
        "reviews",
        _id(),
        _sample_image_fk(),
        sa.Column("label", NAME, nullable=False),
        sa.Column("reviewer", NAME, nullable=False),
        sa.Column("comment", sa.Text, nullable=True),
        _created(),
    )
    op.create_table(
        "sample_image_tags",
        _id(),
        _sample_image_fk(),
        *_tag_columns(),
        sa.UniqueConstraint("sample_image_id", "tag"),
    )
    op.create_table(
        "dataset_image_tags",
        _id(),
        sa.Column("dataset", sa.String(50), nullable=False, index=True),
        sa.Column("path", sa.String(1000), nullable=False),
        *_tag_columns(),
        sa.UniqueConstraint("dataset", "path", "tag"),
    )


def downgrade() -> None:
    for table in ("dataset_image_tags", "sample_image_tags", "reviews", "predictions", "sample_images", "images",
                  "samples"):
        op.drop_table(table)
