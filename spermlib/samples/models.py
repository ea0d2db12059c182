"""The tables of the samples store (SQLAlchemy 2.x declarative models).

A *sample* is a named batch of images a user classified (nothing here asks for a patient identifier).
Deleting one only marks it (``deleted_at``/``deleted_by``: hidden, restorable); its ``version`` goes up with
every change, so an action taken on what a page showed is refused once the sample has changed since.
Its images are stored once by content (``images``, keyed by sha256) and linked to the sample under the
file name they were added with (``sample_images``). Every model verdict is a ``predictions`` row per
sample image and arch; every expert verdict is a new ``reviews`` row (an audit trail: never updated or
overwritten, the latest one counts). Each review and tag records who made it by the acting user's stable
subject, with the display name and email shown beside it. Every change is one ``audit_log`` row, written in
the change's own transaction and never updated or deleted (not even when a sample is purged). Tags are
short labels with an optional comment, on a sample image (``sample_image_tags``) or on an image of a
training dataset (``dataset_image_tags``, by its path in the dataset folder). Changing a table means a
new Alembic revision in ``migrations/versions/``.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAME_LENGTH = 200  # sample names, file names, reviewers, tags
PATH_LENGTH = 1000  # dataset image paths


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Corrupt:
    """A stored JSON value that does not parse: kept as its raw text so the reader can report and skip it."""

    def __init__(self, raw: object):
        self.raw = raw

    def __repr__(self) -> str:
        return f"Corrupt({str(self.raw)[:40]!r})"


class TolerantJSON(TypeDecorator):
    """JSON whose unreadable stored values load as :class:`Corrupt` instead of failing the whole query (one
    bad row must not hide every other sample). PostgreSQL validates JSON on write; SQLite stores any text."""

    impl = JSON
    cache_ok = True

    def result_processor(self, dialect, coltype):
        inner = dialect.type_descriptor(self.impl).result_processor(dialect, coltype)

        def process(value):
            try:
                return inner(value) if inner else value
            except (ValueError, TypeError):  # json.JSONDecodeError is a ValueError
                return Corrupt(value)
        return process


def is_corrupt(value: object) -> bool:
    return isinstance(value, Corrupt)


class Base(DeclarativeBase):
    pass


def _live_name_index() -> Index:
    """Sample names are unique among live samples; a deleted sample keeps its name beside a new one."""
    live = text("deleted_at IS NULL")
    return Index("uq_samples_live_name", "name", unique=True, sqlite_where=live, postgresql_where=live)


class Sample(Base):
    __tablename__ = "samples"
    __table_args__ = (_live_name_index(),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    dataset: Mapped[str] = mapped_column(String(50))  # the task whose models classified it
    arch: Mapped[str] = mapped_column(String(50))  # the model whose verdict the queue and report use
    # {arch: {"folds": [...], "weights_sha256": {fold: digest}}} of every model that classified it
    checkpoints: Mapped[dict] = mapped_column(TolerantJSON)
    code_version: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")  # +1 on every change
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    deleted_by: Mapped[str | None] = mapped_column(String(NAME_LENGTH), nullable=True)  # the actor's subject

    images: Mapped[list[SampleImage]] = relationship(back_populates="sample", cascade="all, delete-orphan",
                                                     order_by="SampleImage.position")


class Image(Base):
    """An image's bytes, stored once however many samples hold it."""

    __tablename__ = "images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)  # loaded only when the bytes are asked for


class SampleImage(Base):
    """One image of one sample, under the file name it was added with."""

    __tablename__ = "sample_images"
    __table_args__ = (UniqueConstraint("sample_id", "file_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    file_name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    position: Mapped[int] = mapped_column(Integer)

    sample: Mapped[Sample] = relationship(back_populates="images")
    image: Mapped[Image] = relationship()
    predictions: Mapped[list[Prediction]] = relationship(back_populates="sample_image", cascade="all, delete-orphan")
    reviews: Mapped[list[Review]] = relationship(back_populates="sample_image", cascade="all, delete-orphan",
                                                 order_by="Review.id")
    tags: Mapped[list[SampleImageTag]] = relationship(cascade="all, delete-orphan", order_by="SampleImageTag.id")


class Prediction(Base):
    __tablename__ = "predictions"
    __table_args__ = (UniqueConstraint("sample_image_id", "arch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sample_image_id: Mapped[int] = mapped_column(ForeignKey("sample_images.id", ondelete="CASCADE"), index=True)
    arch: Mapped[str] = mapped_column(String(50))
    label: Mapped[str] = mapped_column(String(NAME_LENGTH))
    confidence: Mapped[float] = mapped_column(Float)
    probabilities: Mapped[dict] = mapped_column(TolerantJSON)  # class folder name → probability
    fold_labels: Mapped[list] = mapped_column(TolerantJSON)  # each fold model's own argmax
    agreement: Mapped[float | None] = mapped_column(Float, nullable=True)
    model: Mapped[str] = mapped_column(String(NAME_LENGTH))  # which model gave it (ensemble, one fold model)
    in_domain: Mapped[bool | None] = mapped_column(Boolean, nullable=True)  # None: not assessed
    domain_score: Mapped[float | None] = mapped_column(Float, nullable=True)

    sample_image: Mapped[SampleImage] = relationship(back_populates="predictions")


class Review(Base):
    """An expert's label for a sample image: appended, never changed (the latest one counts)."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sample_image_id: Mapped[int] = mapped_column(ForeignKey("sample_images.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(NAME_LENGTH))
    reviewer: Mapped[str] = mapped_column(String(NAME_LENGTH))  # the display name
    reviewer_subject: Mapped[str] = mapped_column(String(NAME_LENGTH))  # the stable identity
    reviewer_email: Mapped[str | None] = mapped_column(String(NAME_LENGTH), nullable=True)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    sample_image: Mapped[SampleImage] = relationship(back_populates="reviews")


class SampleImageTag(Base):
    __tablename__ = "sample_image_tags"
    __table_args__ = (UniqueConstraint("sample_image_id", "tag"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sample_image_id: Mapped[int] = mapped_column(ForeignKey("sample_images.id", ondelete="CASCADE"), index=True)
    tag: Mapped[str] = mapped_column(String(NAME_LENGTH))
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    author: Mapped[str] = mapped_column(String(NAME_LENGTH))  # the display name
    author_subject: Mapped[str] = mapped_column(String(NAME_LENGTH))  # the stable identity
    author_email: Mapped[str | None] = mapped_column(String(NAME_LENGTH), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class DatasetImageTag(Base):
    """A tag on a training image, e.g. "label suspect", by its path relative to the dataset folder."""

    __tablename__ = "dataset_image_tags"
    __table_args__ = (UniqueConstraint("dataset", "path", "tag"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset: Mapped[str] = mapped_column(String(50), index=True)
    path: Mapped[str] = mapped_column(String(PATH_LENGTH))
    tag: Mapped[str] = mapped_column(String(NAME_LENGTH))
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    author: Mapped[str] = mapped_column(String(NAME_LENGTH))  # the display name
    author_subject: Mapped[str] = mapped_column(String(NAME_LENGTH))  # the stable identity
    author_email: Mapped[str | None] = mapped_column(String(NAME_LENGTH), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class AuditEntry(Base):
    """One change to the store: who (subject and display), when (UTC), what, on which sample and image.

    Appended in the transaction of the change it records and never updated or deleted (see the guards
    below). ``sample_id``/``image_id`` (the ``sample_images`` id) are plain integers, not foreign keys, so
    the entries outlive a purged sample.
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, index=True)
    actor_subject: Mapped[str] = mapped_column(String(NAME_LENGTH))
    actor_display: Mapped[str] = mapped_column(String(NAME_LENGTH))
    action: Mapped[str] = mapped_column(String(20))
    sample_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    image_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    details: Mapped[dict] = mapped_column(TolerantJSON)


class AuditLogIsAppendOnly(RuntimeError):
    """A programming error: code tried to change or remove an audit entry."""


@event.listens_for(AuditEntry, "before_update")
@event.listens_for(AuditEntry, "before_delete")
def _refuse_audit_change(_mapper, _connection, target: AuditEntry) -> None:
    raise AuditLogIsAppendOnly(f"audit entry {target.id} is append-only")
