"""The tables of the samples store (SQLAlchemy 2.x declarative models).

A *sample* is a named batch of images a user classified (nothing here asks for a patient identifier).
Its images are stored once by content (``images``, keyed by sha256) and linked to the sample under the
file name they were added with (``sample_images``). Every model verdict is a ``predictions`` row per
sample image and arch; every expert verdict is a new ``reviews`` row (an audit trail: never updated or
overwritten, the latest one counts). Tags are short labels with an optional comment, on a sample image
(``sample_image_tags``) or on an image of a training dataset (``dataset_image_tags``, by its path in the
dataset folder). Changing a table means a new Alembic revision in ``migrations/versions/``.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAME_LENGTH = 200  # sample names, file names, reviewers, tags
PATH_LENGTH = 1000  # dataset image paths


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Sample(Base):
    __tablename__ = "samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    dataset: Mapped[str] = mapped_column(String(50))  # the task whose models classified it
    arch: Mapped[str] = mapped_column(String(50))  # the model whose verdict the queue and report use
    # {arch: {"folds": [...], "weights_sha256": {fold: digest}}} of every model that classified it
    checkpoints: Mapped[dict] = mapped_column(JSON)
    code_version: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

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
    probabilities: Mapped[dict] = mapped_column(JSON)  # class folder name → probability
    fold_labels: Mapped[list] = mapped_column(JSON)  # each fold model's own argmax
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
    reviewer: Mapped[str] = mapped_column(String(NAME_LENGTH))
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
    author: Mapped[str] = mapped_column(String(NAME_LENGTH))
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
    author: Mapped[str] = mapped_column(String(NAME_LENGTH))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
