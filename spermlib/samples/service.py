"""The samples service: everything the CLI and the app save, read or delete goes through :class:`SampleStore`.

Every method is one short transaction through the ORM (parameterised queries only) and returns plain,
immutable records (no live ORM objects leave this module). A database failure becomes one
:class:`~spermlib.samples.db.SampleStoreError`. Reviews are only ever appended (an audit trail: the
latest review of an image is its reviewed label; the earlier ones stay). Classifying is the Predictor's
job (:meth:`SampleStore.add_sample` runs it); :meth:`SampleStore.save_sample` stores verdicts already
computed (the Classify page saves what it has shown).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from sqlalchemy import Engine, delete, exists, select
from sqlalchemy.orm import Session, selectinload

from spermlib.archs import check_arch
from spermlib.data.datasets import DatasetSpec, get_dataset
from spermlib.samples import models as m
from spermlib.samples.db import BUSY_TIMEOUT_S, SampleStoreError, describe, guard_db, open_engine
from spermlib.store.results import prob_column
from spermlib.version import __version__

if TYPE_CHECKING:
    from spermlib.inference.predict import Prediction as ModelPrediction
    from spermlib.inference.predict import Predictor

MAX_IMAGE_BYTES = 20 * 1024 * 1024  # as the dashboard's upload limit (.streamlit/config.toml)

_guard = guard_db(lambda store, *args, **kwargs: store.url)


# ----------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class PredictionRecord:
    """One arch's verdict on one image."""

    arch: str
    label: str
    confidence: float
    probabilities: dict[str, float]
    fold_labels: tuple[str, ...] = ()
    agreement: float | None = None
    model: str = "ensemble"
    in_domain: bool | None = None  # None: not assessed
    domain_score: float | None = None

    @classmethod
    def from_prediction(cls, arch: str, pred: ModelPrediction, model: str) -> PredictionRecord:
        """From the Predictor's ``Prediction``; its domain fields are read only when that version has them."""
        in_domain = getattr(pred, "in_domain", None)
        score = getattr(pred, "domain_score", None)
        return cls(arch=arch, label=pred.label, confidence=float(pred.confidence),
                   probabilities={k: float(v) for k, v in pred.probabilities.items()},
                   fold_labels=tuple(pred.fold_labels), agreement=pred.agreement, model=model,
                   in_domain=None if in_domain is None else bool(in_domain),
                   domain_score=None if score is None else float(score))


@dataclass(frozen=True)
class ReviewRecord:
    label: str
    reviewer: str
    comment: str | None
    created_at: datetime


@dataclass(frozen=True)
class TagRecord:
    tag: str
    comment: str | None
    author: str
    created_at: datetime


@dataclass(frozen=True)
class DatasetTagRecord(TagRecord):
    dataset: str = ""
    path: str = ""


@dataclass(frozen=True)
class ImageRecord:
    """One image of a sample with its verdicts, reviews (oldest first) and tags; no bytes."""

    file_name: str
    sha256: str
    size_bytes: int
    width: int | None
    height: int | None
    predictions: dict[str, PredictionRecord]
    reviews: tuple[ReviewRecord, ...] = ()
    tags: tuple[TagRecord, ...] = ()

    @property
    def latest_review(self) -> ReviewRecord | None:
        return self.reviews[-1] if self.reviews else None

    def final_label(self, arch: str) -> str | None:
        """The reviewed label if any, else ``arch``'s."""
        if self.reviews:
            return self.reviews[-1].label
        pred = self.predictions.get(arch)
        return pred.label if pred else None


@dataclass(frozen=True)
class SampleSummary:
    name: str
    dataset: str
    arch: str
    created_at: datetime
    code_version: str
    checkpoints: dict
    n_images: int
    n_reviewed: int


@dataclass(frozen=True)
class NewImage:
    """An image to save with the verdicts already computed for it (by arch)."""

    file_name: str
    data: bytes
    predictions: Mapping[str, PredictionRecord]
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class SampleDetail:
    summary: SampleSummary
    images: list[ImageRecord] = field(default_factory=list)


# ----------------------------------------------------------------------------------------- helpers


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def code_version() -> str:
    """spermlib's version and git commit, recorded with every sample."""
    from spermlib.training.card import git_commit  # torch: only where a model runs anyway

    return f"spermlib {__version__} ({git_commit()})"


def checkpoint_digests(predictor: Predictor) -> dict:
    """What identifies the models of one arch: fold numbers and each fold's ``weights_sha256`` (its card)."""
    return {"folds": list(predictor.folds),
            "weights_sha256": {str(c["fold"]): c.get("weights_sha256") for c in predictor.cards}}


def resolve_label(spec: DatasetSpec, text: str) -> str:
    """A class of ``spec`` by folder name or display name (any case); else a :class:`SampleStoreError`."""
    wanted = text.strip().casefold()
    for folder, shown in zip(spec.class_dirs, spec.display_names):
        if wanted in (folder.casefold(), shown.casefold()):
            return folder
    choices = ", ".join(f"{d} ({f})" for f, d in zip(spec.class_dirs, spec.display_names))
    raise SampleStoreError(f"{text!r} is not a class of {spec.name}; choose one of: {choices}")


def _text(value: str | None, what: str, limit: int = m.NAME_LENGTH) -> str:
    value = (value or "").strip()
    if not value:
        raise SampleStoreError(f"{what} must not be empty")
    if len(value) > limit:
        raise SampleStoreError(f"{what} is longer than {limit} characters")
    return value


def _comment(value: str | None) -> str | None:
    return (value or "").strip() or None


def _read_file(source: str | Path | tuple[str, bytes], max_bytes: int) -> tuple[str, bytes]:
    """(file name, bytes) of a path or of a (name, bytes) pair; a file over the limit is refused unread."""
    if isinstance(source, tuple):
        return source
    path = Path(source)
    if not path.is_file():
        raise SampleStoreError(f"{path}: no such file")
    if path.stat().st_size > max_bytes:
        raise SampleStoreError(_too_large(path.name, path.stat().st_size, max_bytes))
    return path.name, path.read_bytes()


def _size(n_bytes: int) -> str:
    mib = 1024 * 1024  # MB as Streamlit's upload limit counts them
    return f"{n_bytes / mib:.1f} MB" if n_bytes >= mib else f"{n_bytes / 1024:.0f} kB"


def _too_large(name: str, n_bytes: int, max_bytes: int) -> str:
    return f"{name}: {_size(n_bytes)} is over the samples store's limit of {_size(max_bytes)} per image; not saved"


def as_utc(when: datetime) -> datetime:
    """SQLite returns the stored UTC times without their zone; every record carries it."""
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _prediction_record(row: m.Prediction) -> PredictionRecord:
    return PredictionRecord(arch=row.arch, label=row.label, confidence=row.confidence,
                            probabilities=dict(row.probabilities), fold_labels=tuple(row.fold_labels),
                            agreement=row.agreement, model=row.model, in_domain=row.in_domain,
                            domain_score=row.domain_score)


def _review_record(row: m.Review) -> ReviewRecord:
    return ReviewRecord(row.label, row.reviewer, row.comment, as_utc(row.created_at))


def _image_record(row: m.SampleImage) -> ImageRecord:
    return ImageRecord(
        file_name=row.file_name, sha256=row.image.sha256, size_bytes=row.image.size_bytes, width=row.image.width,
        height=row.image.height, predictions={p.arch: _prediction_record(p) for p in row.predictions},
        reviews=tuple(_review_record(r) for r in row.reviews),
        tags=tuple(TagRecord(t.tag, t.comment, t.author, as_utc(t.created_at)) for t in row.tags))


def _summary(row: m.Sample) -> SampleSummary:
    return SampleSummary(name=row.name, dataset=row.dataset, arch=row.arch, created_at=as_utc(row.created_at),
                         code_version=row.code_version, checkpoints=dict(row.checkpoints), n_images=len(row.images),
                         n_reviewed=sum(bool(i.reviews) for i in row.images))


# ----------------------------------------------------------------------------------------- the store


class SampleStore:
    """The samples database. Thread-safe: each method opens its own session on the shared engine."""

    def __init__(self, engine: Engine, url: str, max_image_bytes: int = MAX_IMAGE_BYTES):
        self.engine = engine
        self.url = url
        self.max_image_bytes = max_image_bytes

    @classmethod
    def open(cls, url: str | None = None, busy_timeout_s: float = BUSY_TIMEOUT_S,
             max_image_bytes: int = MAX_IMAGE_BYTES) -> SampleStore:
        """Connect (default ``$SPERMLIB_DB_URL`` or the user's SQLite file) after the schema check."""
        from spermlib.samples.db import default_db_url

        url = url or default_db_url()
        return cls(open_engine(url, busy_timeout_s), url, max_image_bytes)

    def __repr__(self) -> str:
        return f"SampleStore({describe(self.url)})"

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self.engine) as session, session.begin():
            yield session

    # ------------------------------------------------------------------ samples

    def _sample(self, session: Session, name: str) -> m.Sample:
        row = session.scalars(select(m.Sample).where(m.Sample.name == name)).one_or_none()
        if row is None:
            raise SampleStoreError(f"no sample named {name!r}; `spermlib samples list` shows them")
        return row

    def _sample_image(self, session: Session, name: str, file_name: str) -> m.SampleImage:
        sample = self._sample(session, name)
        row = session.scalars(select(m.SampleImage).where(m.SampleImage.sample_id == sample.id,
                                                          m.SampleImage.file_name == file_name)).one_or_none()
        if row is None:
            files = ", ".join(i.file_name for i in sample.images[:10])
            raise SampleStoreError(f"sample {name!r} has no image {file_name!r} (its images: {files})")
        return row

    def _image_row(self, session: Session, item: NewImage) -> m.Image:
        digest = sha256_of(item.data)
        row = session.scalars(select(m.Image).where(m.Image.sha256 == digest)).one_or_none()
        if row is None:
            row = m.Image(sha256=digest, size_bytes=len(item.data), width=item.width, height=item.height,
                          data=item.data)
            session.add(row)
        return row

    def _check_new(self, name: str, images: Sequence[NewImage]) -> None:
        if not images:
            raise SampleStoreError(f"sample {name!r}: no image to save")
        names = [i.file_name for i in images]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise SampleStoreError(f"sample {name!r}: file name(s) {', '.join(doubled)} given twice; rename them")
        for item in images:
            _text(item.file_name, "a file name")
            if len(item.data) > self.max_image_bytes:
                raise SampleStoreError(_too_large(item.file_name, len(item.data), self.max_image_bytes))

    @_guard
    def save_sample(self, name: str, dataset: str, arch: str, images: Sequence[NewImage], checkpoints: dict,
                    version: str | None = None) -> SampleSummary:
        """Store a new sample with verdicts already computed (``checkpoints``: arch → :func:`checkpoint_digests`)."""
        name = _text(name, "the sample name")
        spec, arch = get_dataset(dataset), check_arch(arch)
        self._check_new(name, images)
        with self._session() as s:
            if s.scalars(select(m.Sample.id).where(m.Sample.name == name)).first() is not None:
                raise SampleStoreError(f"a sample named {name!r} already exists; choose another name or delete it")
            sample = m.Sample(name=name, dataset=spec.name, arch=arch, checkpoints=dict(checkpoints),
                              code_version=version or code_version())
            s.add(sample)
            for position, item in enumerate(images):
                link = m.SampleImage(image=self._image_row(s, item), file_name=item.file_name, position=position)
                link.predictions = [
                    m.Prediction(arch=p.arch, label=p.label, confidence=p.confidence, probabilities=p.probabilities,
                                 fold_labels=list(p.fold_labels), agreement=p.agreement, model=p.model,
                                 in_domain=p.in_domain, domain_score=p.domain_score)
                    for p in item.predictions.values()]
                sample.images.append(link)
            s.flush()
            return _summary(sample)

    def add_sample(self, name: str, dataset: str, arch: str, files: Sequence[str | Path | tuple[str, bytes]],
                   predictor: Predictor | None = None, checkpoints_dir: Path | None = None,
                   tta: bool = True) -> SampleSummary:
        """Classify ``files`` (paths, or (name, bytes) pairs) with ``arch``'s fold ensemble (``tta``: as ``predict``
        and the Classify page by default, the mean over each image's 8 flips/90° turns; a ``predictor`` given
        keeps its own setting) and save them as sample ``name``. Nothing is saved if any file is missing, too
        large or not an image."""
        from spermlib.data.imageio import ImageError, load_rgb

        spec, arch = get_dataset(dataset), check_arch(arch)
        name = _text(name, "the sample name")
        if name in {s.name for s in self.list_samples()}:  # before the models load: fail fast
            raise SampleStoreError(f"a sample named {name!r} already exists; choose another name or delete it")
        items = [_read_file(f, self.max_image_bytes) for f in files]
        images, failed = [], []
        for file_name, data in items:
            try:
                images.append(load_rgb(data, name=file_name))
            except ImageError as err:
                failed.append(str(err))
        if failed:
            raise SampleStoreError("; ".join(failed) + "; nothing saved")
        if predictor is None:
            from spermlib.inference.predict import Predictor

            predictor = Predictor.from_checkpoints(spec, arch=arch, checkpoints_dir=checkpoints_dir, tta=tta)
        preds = predictor.predict_images(images, [n for n, _ in items], keep_inputs=False)
        n = len(predictor.folds)
        model = f"ensemble of {n} fold models" if n > 1 else f"fold-{predictor.folds[0]} model"
        new = [NewImage(file_name, data, {arch: PredictionRecord.from_prediction(arch, pred, model)}, *img.size)
               for (file_name, data), img, pred in zip(items, images, preds)]
        return self.save_sample(name, spec.name, arch, new, {arch: checkpoint_digests(predictor)})

    @_guard
    def list_samples(self) -> list[SampleSummary]:
        """Every sample, newest first."""
        with self._session() as s:
            rows = s.scalars(select(m.Sample).options(selectinload(m.Sample.images).selectinload(m.SampleImage.reviews))
                             .order_by(m.Sample.created_at.desc(), m.Sample.id.desc()))
            return [_summary(r) for r in rows]

    @_guard
    def sample(self, name: str) -> SampleDetail:
        """A sample with all its images, verdicts, reviews and tags (no image bytes)."""
        with self._session() as s:
            row = self._sample(s, name)
            images = s.scalars(select(m.SampleImage).where(m.SampleImage.sample_id == row.id)
                               .options(selectinload(m.SampleImage.image), selectinload(m.SampleImage.predictions),
                                        selectinload(m.SampleImage.reviews), selectinload(m.SampleImage.tags))
                               .order_by(m.SampleImage.position)).all()
            return SampleDetail(_summary(row), [_image_record(i) for i in images])

    @_guard
    def image_bytes(self, name: str, file_name: str) -> bytes:
        with self._session() as s:
            return self._sample_image(s, name, file_name).image.data

    @_guard
    def delete_sample(self, name: str) -> int:
        """Delete a sample with its images' links, verdicts, reviews and tags, and every image no other sample
        holds. Returns how many images it had."""
        with self._session() as s:
            sample = self._sample(s, name)
            n = len(sample.images)
            s.delete(sample)
            s.flush()
            s.execute(delete(m.Image).where(~exists().where(m.SampleImage.image_id == m.Image.id)))
            return n

    # ------------------------------------------------------------------ reviews

    @_guard
    def review(self, name: str, file_name: str, label: str, reviewer: str, comment: str | None = None
               ) -> ReviewRecord:
        """Append a review (the image's label by ``reviewer``); earlier reviews stay as they were."""
        reviewer = _text(reviewer, "the reviewer's name")
        with self._session() as s:
            link = self._sample_image(s, name, file_name)
            row = m.Review(sample_image=link, label=resolve_label(get_dataset(link.sample.dataset), label),
                           reviewer=reviewer, comment=_comment(comment))
            s.add(row)
            s.flush()
            return _review_record(row)

    @_guard
    def history(self, name: str, file_name: str) -> list[ReviewRecord]:
        """Every review of one image, oldest first."""
        with self._session() as s:
            return [_review_record(r) for r in self._sample_image(s, name, file_name).reviews]

    # ------------------------------------------------------------------ tags

    @_guard
    def tag_image(self, name: str, file_name: str, tag: str, author: str, comment: str | None = None) -> TagRecord:
        """Tag a sample image (tagging it again with the same tag replaces the comment)."""
        tag, author = _text(tag, "the tag"), _text(author, "the author's name")
        with self._session() as s:
            link = self._sample_image(s, name, file_name)
            row = next((t for t in link.tags if t.tag == tag), None)
            if row is None:
                row = m.SampleImageTag(tag=tag)
                link.tags.append(row)
            row.comment, row.author, row.created_at = _comment(comment), author, m.utc_now()
            return TagRecord(tag, row.comment, author, row.created_at)

    @_guard
    def untag_image(self, name: str, file_name: str, tag: str) -> bool:
        with self._session() as s:
            link = self._sample_image(s, name, file_name)
            found = [t for t in link.tags if t.tag == tag]
            for t in found:
                link.tags.remove(t)
            return bool(found)

    @_guard
    def tag_dataset_image(self, dataset: str, path: str, tag: str, author: str, comment: str | None = None
                          ) -> DatasetTagRecord:
        """Tag an image of a training dataset by its path in the dataset folder (again: replaces the comment)."""
        spec = get_dataset(dataset)
        path, tag = _text(path, "the image path", m.PATH_LENGTH), _text(tag, "the tag")
        author = _text(author, "the author's name")
        with self._session() as s:
            row = s.scalars(select(m.DatasetImageTag).where(m.DatasetImageTag.dataset == spec.name,
                                                            m.DatasetImageTag.path == path,
                                                            m.DatasetImageTag.tag == tag)).one_or_none()
            if row is None:
                row = m.DatasetImageTag(dataset=spec.name, path=path, tag=tag)
                s.add(row)
            row.comment, row.author, row.created_at = _comment(comment), author, m.utc_now()
            return DatasetTagRecord(tag, row.comment, author, row.created_at, spec.name, path)

    @_guard
    def untag_dataset_image(self, dataset: str, path: str, tag: str) -> bool:
        with self._session() as s:
            result = s.execute(delete(m.DatasetImageTag).where(
                m.DatasetImageTag.dataset == get_dataset(dataset).name, m.DatasetImageTag.path == path,
                m.DatasetImageTag.tag == tag))
            return bool(result.rowcount)

    @_guard
    def dataset_tags(self, dataset: str) -> list[DatasetTagRecord]:
        """Every tag on ``dataset``'s images, by path then tag."""
        with self._session() as s:
            rows = s.scalars(select(m.DatasetImageTag).where(m.DatasetImageTag.dataset == get_dataset(dataset).name)
                             .order_by(m.DatasetImageTag.path, m.DatasetImageTag.tag))
            return [DatasetTagRecord(r.tag, r.comment, r.author, as_utc(r.created_at), r.dataset, r.path) for r in rows]

    # ------------------------------------------------------------------ export

    def export_table(self, name: str) -> pd.DataFrame:
        """One row per image: verdicts of every arch, probabilities of the sample's arch, domain flag, the
        latest review and how many there were, tags."""
        detail = self.sample(name)
        spec, arch = get_dataset(detail.summary.dataset), detail.summary.arch
        archs = sorted({a for i in detail.images for a in i.predictions}, key=lambda a: a != arch)
        rows = []
        for img in detail.images:
            pred, review = img.predictions.get(arch), img.latest_review
            row = {"file": img.file_name, "sha256": img.sha256, "bytes": img.size_bytes, "width": img.width,
                   "height": img.height}
            row |= {f"model_label_{a}": img.predictions[a].label if a in img.predictions else "" for a in archs}
            row |= {"confidence": pred.confidence if pred else None, "agreement": pred.agreement if pred else None,
                    "in_domain": pred.in_domain if pred else None, "domain_score": pred.domain_score if pred else None}
            row |= {prob_column(c): (pred.probabilities.get(c) if pred else None) for c in spec.class_dirs}
            row |= {"reviewed_label": review.label if review else "", "reviewer": review.reviewer if review else "",
                    "reviewed_at": review.created_at.isoformat() if review else "", "n_reviews": len(img.reviews),
                    "final_label": img.final_label(arch) or "", "tags": "; ".join(t.tag for t in img.tags)}
            rows.append(row)
        return pd.DataFrame(rows)

    def export_csv(self, name: str) -> str:
        buf = io.StringIO()
        self.export_table(name).to_csv(buf, index=False, lineterminator="\n")
        return buf.getvalue()
