"""The samples service: everything the CLI and the app save, read or delete goes through :class:`SampleStore`.

Every method is one short transaction through the ORM (parameterised queries only) and returns plain,
immutable records (no live ORM objects leave this module). A database failure becomes one
:class:`~spermlib.samples.db.SampleStoreError`.

Who may do what is decided here, not by the pages: every change and every sensitive read (export, audit
log, deleted samples) takes the acting :class:`~spermlib.samples.access.Actor` first and calls
:func:`~spermlib.samples.access.require` before anything else. Every change appends one audit entry in
its own transaction; nothing here updates or deletes one. Deletes are soft (hidden, restorable by an
admin); only :meth:`SampleStore.purge_sample` removes a deleted sample's rows, and its audit entries stay.

An action on a sample names what the user saw: the sample's and image's database ids and the sample's
``version`` (:class:`SampleRef`, :class:`ImageRef`), and is refused once that sample was deleted, replaced
or changed since (optimistic concurrency: every change bumps the version in the same statement that
checks it, so two writers cannot both pass).

Reviews are only ever appended (the latest review of an image is its reviewed label; the earlier ones
stay). A stored record that no longer parses (malformed JSON) is reported and skipped, never a failure of
the whole list, export or report. Classifying is the Predictor's job (:meth:`SampleStore.add_sample` runs
it); :meth:`SampleStore.save_sample` stores verdicts already computed (the Classify page saves what it has
shown).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from sqlalchemy import Engine, delete, exists, select, update
from sqlalchemy.orm import Session, selectinload

from spermlib.archs import check_arch
from spermlib.data.datasets import DatasetSpec, get_dataset
from spermlib.fileio import csv_text
from spermlib.samples import models as m
from spermlib.samples.access import Actor, require
from spermlib.samples.db import BUSY_TIMEOUT_S, SampleStoreError, describe, guard_db, open_engine, writer
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
    reviewer: str  # the display name (and email) shown
    comment: str | None
    created_at: datetime
    reviewer_subject: str = ""  # the stable identity it was recorded under


@dataclass(frozen=True)
class TagRecord:
    tag: str
    comment: str | None
    author: str  # the display name (and email) shown
    created_at: datetime
    author_subject: str = ""


@dataclass(frozen=True)
class DatasetTagRecord(TagRecord):
    dataset: str = ""
    path: str = ""


@dataclass(frozen=True)
class SampleRef:
    """What an action on a whole sample names: its id and the version the user saw (``name`` for messages)."""

    sample_id: int
    version: int
    name: str


@dataclass(frozen=True)
class ImageRef(SampleRef):
    """What an action on one image names: the sample's ref and the image's id (``sample_images.id``)."""

    image_id: int = 0
    file_name: str = ""


@dataclass(frozen=True)
class ImageRecord:
    """One image of a sample with its verdicts, reviews (oldest first) and tags; no bytes. ``id`` is the
    sample image's database id (``sample_images.id``)."""

    file_name: str
    sha256: str
    size_bytes: int
    width: int | None
    height: int | None
    predictions: dict[str, PredictionRecord]
    reviews: tuple[ReviewRecord, ...] = ()
    tags: tuple[TagRecord, ...] = ()
    id: int = 0

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
    id: int = 0
    version: int = 1
    deleted_at: datetime | None = None
    deleted_by: str | None = None  # the subject of who deleted it

    @property
    def ref(self) -> SampleRef:
        return SampleRef(self.id, self.version, self.name)


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
    problems: tuple[str, ...] = ()  # records that could not be read, each naming the sample and image

    def image_ref(self, image: ImageRecord) -> ImageRef:
        """The ref an action on ``image`` (as shown) carries."""
        s = self.summary
        return ImageRef(s.id, s.version, s.name, image.id, image.file_name)


class Listing(list):
    """A list of records, with what could not be read and was skipped (``problems``, one sentence each)."""

    def __init__(self, items: Iterable = (), problems: Iterable[str] = ()):
        super().__init__(items)
        self.problems = tuple(problems)


@dataclass(frozen=True)
class CsvExport:
    """A CSV for a user (formula-safe), with the records it had to skip."""

    text: str
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuditRecord:
    """One audit entry: who (stable subject, display), when (UTC), what, on which sample and image."""

    id: int
    created_at: datetime
    actor_subject: str
    actor_display: str
    action: str
    sample_id: int | None
    image_id: int | None
    details: dict


# ----------------------------------------------------------------------------------------- helpers


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _code_version() -> str:
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
    return ReviewRecord(row.label, row.reviewer, row.comment, as_utc(row.created_at), row.reviewer_subject)


def _tag_record(row: m.SampleImageTag) -> TagRecord:
    return TagRecord(row.tag, row.comment, row.author, as_utc(row.created_at), row.author_subject)


def _dataset_tag_record(row: m.DatasetImageTag) -> DatasetTagRecord:
    return DatasetTagRecord(row.tag, row.comment, row.author, as_utc(row.created_at), row.author_subject,
                            row.dataset, row.path)


def _unreadable_verdicts(row: m.SampleImage) -> list[str]:
    return [p.arch for p in row.predictions if m.is_corrupt(p.probabilities) or m.is_corrupt(p.fold_labels)]


def _image_record(row: m.SampleImage) -> ImageRecord:
    return ImageRecord(
        file_name=row.file_name, sha256=row.image.sha256, size_bytes=row.image.size_bytes, width=row.image.width,
        height=row.image.height, predictions={p.arch: _prediction_record(p) for p in row.predictions},
        reviews=tuple(_review_record(r) for r in row.reviews), tags=tuple(_tag_record(t) for t in row.tags),
        id=row.id)


def _summary(row: m.Sample) -> SampleSummary:
    """A sample's summary; unreadable checkpoint digests read as none (the caller reports them)."""
    checkpoints = {} if m.is_corrupt(row.checkpoints) else dict(row.checkpoints)
    return SampleSummary(name=row.name, dataset=row.dataset, arch=row.arch, created_at=as_utc(row.created_at),
                         code_version=row.code_version, checkpoints=checkpoints, n_images=len(row.images),
                         n_reviewed=sum(bool(i.reviews) for i in row.images), id=row.id, version=row.version,
                         deleted_at=as_utc(row.deleted_at) if row.deleted_at else None, deleted_by=row.deleted_by)


def _audit_record(row: m.AuditEntry) -> AuditRecord:
    details = {"unreadable": str(row.details.raw)} if m.is_corrupt(row.details) else dict(row.details)
    return AuditRecord(row.id, as_utc(row.created_at), row.actor_subject, row.actor_display, row.action,
                       row.sample_id, row.image_id, details)


class SampleChanged(SampleStoreError):
    """The sample an action named was deleted, replaced or changed since it was read: reload and act again."""


def _stale(name: str) -> SampleChanged:
    return SampleChanged(f"sample {name!r} was changed or deleted since you opened it; reload")


def _who(actor: Actor, what: str) -> str:
    """The actor's display name as recorded with a review or tag (checked like any user text)."""
    return _text(actor.display, what)


def export_frame(detail: SampleDetail) -> pd.DataFrame:
    """One row per image: verdicts of every arch, probabilities of the sample's arch, domain flag, the
    latest review and how many there were, tags."""
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
                "reviewer_subject": review.reviewer_subject if review else "",
                "reviewed_at": review.created_at.isoformat() if review else "", "n_reviews": len(img.reviews),
                "final_label": img.final_label(arch) or "", "tags": "; ".join(t.tag for t in img.tags)}
        rows.append(row)
    return pd.DataFrame(rows)


AUDIT_COLUMNS = ["when (UTC)", "actor", "subject", "action", "sample id", "image id", "details"]


def audit_frame(entries: Sequence[AuditRecord]) -> pd.DataFrame:
    """The audit log as a table (as listed: newest first)."""
    import json

    return pd.DataFrame([{"when (UTC)": e.created_at.strftime("%Y-%m-%d %H:%M:%S"), "actor": e.actor_display,
                          "subject": e.actor_subject, "action": e.action, "sample id": e.sample_id,
                          "image id": e.image_id, "details": json.dumps(e.details, ensure_ascii=False,
                                                                        sort_keys=True)}
                         for e in entries], columns=AUDIT_COLUMNS)


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
    def _session(self, write: bool = False) -> Iterator[Session]:
        """One transaction: deferred for reads (never waits for a writer), ``BEGIN IMMEDIATE`` for writes."""
        with Session(writer(self.engine) if write else self.engine) as session, session.begin():
            yield session

    @staticmethod
    def _audit(session: Session, actor: Actor, action: str, sample_id: int | None = None,
               image_id: int | None = None, **details) -> None:
        """Append one audit entry to the transaction of the change it records."""
        session.add(m.AuditEntry(created_at=m.utc_now(), actor_subject=actor.subject[:m.NAME_LENGTH],
                                 actor_display=actor.display[:m.NAME_LENGTH], action=action, sample_id=sample_id,
                                 image_id=image_id, details=details))

    # ------------------------------------------------------------------ finding what an action names

    def _sample(self, session: Session, name: str) -> m.Sample:
        row = session.scalars(select(m.Sample).where(m.Sample.name == name, m.Sample.deleted_at.is_(None))
                              ).one_or_none()
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

    @staticmethod
    def _claim(session: Session, ref: SampleRef) -> m.Sample:
        """The live sample ``ref`` names, its version bumped; refused when it was deleted, replaced or changed
        since. Check and bump are one UPDATE, so of two concurrent actions on one version only one passes."""
        bumped = session.execute(
            update(m.Sample).where(m.Sample.id == ref.sample_id, m.Sample.version == ref.version,
                                   m.Sample.deleted_at.is_(None))
            .values(version=m.Sample.version + 1).execution_options(synchronize_session=False))
        if bumped.rowcount != 1:
            raise _stale(ref.name)
        return session.get(m.Sample, ref.sample_id, populate_existing=True)

    def _claim_image(self, session: Session, ref: ImageRef) -> m.SampleImage:
        sample = self._claim(session, ref)
        link = session.get(m.SampleImage, ref.image_id)
        if link is None or link.sample_id != sample.id:
            raise _stale(ref.name)
        return link

    @_guard
    def image_ref(self, name: str, file_name: str) -> ImageRef:
        """The ref of sample ``name``'s image ``file_name`` as it is now (for the CLI, which acts at once)."""
        with self._session() as s:
            link = self._sample_image(s, name, file_name)
            return ImageRef(link.sample_id, link.sample.version, name, link.id, file_name)

    @_guard
    def sample_ref(self, name: str) -> SampleRef:
        with self._session() as s:
            row = self._sample(s, name)
            return SampleRef(row.id, row.version, row.name)

    # ------------------------------------------------------------------ samples

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

    @staticmethod
    def _refuse_taken(session: Session, name: str) -> None:
        taken = session.scalars(select(m.Sample.id).where(m.Sample.name == name, m.Sample.deleted_at.is_(None)))
        if taken.first() is not None:
            raise SampleStoreError(f"a sample named {name!r} already exists; choose another name or delete it")

    @_guard
    def save_sample(self, actor: Actor, name: str, dataset: str, arch: str, images: Sequence[NewImage],
                    checkpoints: dict, code_version: str | None = None) -> SampleSummary:
        """Store a new sample with verdicts already computed (``checkpoints``: arch → :func:`checkpoint_digests`)."""
        require(actor, "save")
        name = _text(name, "the sample name")
        spec, arch = get_dataset(dataset), check_arch(arch)
        self._check_new(name, images)
        with self._session(write=True) as s:
            self._refuse_taken(s, name)
            sample = m.Sample(name=name, dataset=spec.name, arch=arch, checkpoints=dict(checkpoints),
                              code_version=code_version or _code_version(), version=1)
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
            self._audit(s, actor, "save", sample.id, name=name, dataset=spec.name, arch=arch,
                        files=[i.file_name for i in images])
            return _summary(sample)

    def add_sample(self, actor: Actor, name: str, dataset: str, arch: str,
                   files: Sequence[str | Path | tuple[str, bytes]], predictor: Predictor | None = None,
                   checkpoints_dir: Path | None = None, tta: bool = True) -> SampleSummary:
        """Classify ``files`` (paths, or (name, bytes) pairs) with ``arch``'s fold ensemble (``tta``: as ``predict``
        and the Classify page by default, the mean over each image's 8 flips/90° turns; a ``predictor`` given
        keeps its own setting) and save them as sample ``name``. Nothing is saved if any file is missing, too
        large or not an image."""
        from spermlib.data.imageio import ImageError, load_rgb

        require(actor, "save")  # before the models load: fail fast
        spec, arch = get_dataset(dataset), check_arch(arch)
        name = _text(name, "the sample name")
        if name in {s.name for s in self.list_samples()}:
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
        return self.save_sample(actor, name, spec.name, arch, new, {arch: checkpoint_digests(predictor)})

    @staticmethod
    def _summaries(rows: Iterable[m.Sample]) -> Listing:
        good, problems = [], []
        for row in rows:
            if m.is_corrupt(row.checkpoints):
                problems.append(f"sample {row.name!r} (id {row.id}): its checkpoints record is not readable "
                                "(malformed JSON); skipped")
            else:
                good.append(_summary(row))
        return Listing(good, problems)

    def _listed(self, deleted: bool) -> Listing:
        with self._session() as s:
            gone = m.Sample.deleted_at.is_not(None) if deleted else m.Sample.deleted_at.is_(None)
            rows = s.scalars(select(m.Sample).where(gone)
                             .options(selectinload(m.Sample.images).selectinload(m.SampleImage.reviews))
                             .order_by(m.Sample.created_at.desc(), m.Sample.id.desc()))
            return self._summaries(rows)

    @_guard
    def list_samples(self) -> Listing:
        """Every live sample, newest first; ``.problems`` names the samples whose records could not be read."""
        return self._listed(deleted=False)

    @_guard
    def deleted_samples(self, actor: Actor) -> Listing:
        """Every deleted (restorable) sample, newest first (admins: it needs the right to restore)."""
        require(actor, "restore")
        return self._listed(deleted=True)

    @_guard
    def sample(self, name: str) -> SampleDetail:
        """A live sample with its images, verdicts, reviews and tags (no image bytes); an image whose records
        cannot be read is left out and named in ``problems``."""
        with self._session() as s:
            row = self._sample(s, name)
            links = s.scalars(select(m.SampleImage).where(m.SampleImage.sample_id == row.id)
                              .options(selectinload(m.SampleImage.image), selectinload(m.SampleImage.predictions),
                                       selectinload(m.SampleImage.reviews), selectinload(m.SampleImage.tags))
                              .order_by(m.SampleImage.position)).all()
            problems = [f"sample {name!r}: its checkpoints record is not readable (malformed JSON); the report "
                        "names no checkpoint"] if m.is_corrupt(row.checkpoints) else []
            images = []
            for link in links:
                bad = _unreadable_verdicts(link)
                if bad:
                    problems.append(f"sample {name!r}, image {link.file_name!r} (id {link.id}): its {', '.join(bad)} "
                                    "verdict is not readable (malformed JSON); skipped")
                else:
                    images.append(_image_record(link))
            return SampleDetail(_summary(row), images, tuple(problems))

    @_guard
    def image_bytes(self, name: str, file_name: str) -> bytes:
        with self._session() as s:
            return self._sample_image(s, name, file_name).image.data

    @_guard
    def delete_sample(self, actor: Actor, ref: SampleRef) -> int:
        """Delete (hide) the sample ``ref`` names; its images, verdicts, reviews and tags stay, restorable by
        an admin. Returns how many images it has."""
        require(actor, "delete")
        with self._session(write=True) as s:
            sample = self._claim(s, ref)
            sample.deleted_at, sample.deleted_by = m.utc_now(), actor.subject[:m.NAME_LENGTH]
            self._audit(s, actor, "delete", sample.id, name=sample.name, version=sample.version)
            return len(sample.images)

    @_guard
    def restore_sample(self, actor: Actor, sample_id: int) -> SampleSummary:
        """Bring back a deleted sample (refused while a live sample has its name)."""
        require(actor, "restore")
        with self._session(write=True) as s:
            sample = s.get(m.Sample, sample_id)
            if sample is None or sample.deleted_at is None:
                raise SampleStoreError(f"no deleted sample with id {sample_id}; `spermlib samples list --deleted` "
                                       "shows them")
            self._refuse_taken(s, sample.name)
            sample.deleted_at, sample.deleted_by, sample.version = None, None, sample.version + 1
            self._audit(s, actor, "restore", sample.id, name=sample.name, version=sample.version)
            s.flush()
            return _summary(sample)

    @_guard
    def purge_sample(self, actor: Actor, name: str) -> int:
        """Remove every deleted sample named ``name`` with its images' links, verdicts, reviews and tags, and
        every image no other sample holds; their audit entries stay. Returns how many samples were purged."""
        require(actor, "purge")
        with self._session(write=True) as s:
            rows = s.scalars(select(m.Sample).where(m.Sample.name == name, m.Sample.deleted_at.is_not(None))).all()
            if not rows:
                live = s.scalars(select(m.Sample.id).where(m.Sample.name == name)).first() is not None
                raise SampleStoreError(f"sample {name!r} is not deleted: delete it first (purge removes only deleted "
                                       "samples)" if live else f"no deleted sample named {name!r}")
            for row in rows:
                self._audit(s, actor, "purge", row.id, name=row.name, files=[i.file_name for i in row.images],
                            sha256=[i.image.sha256 for i in row.images],
                            reviews=sum(len(i.reviews) for i in row.images))
                s.delete(row)
            s.flush()
            s.execute(delete(m.Image).where(~exists().where(m.SampleImage.image_id == m.Image.id)))
            return len(rows)

    # ------------------------------------------------------------------ reviews

    @_guard
    def review(self, actor: Actor, ref: ImageRef, label: str, comment: str | None = None) -> ReviewRecord:
        """Append ``actor``'s review (the image's label) of the image ``ref`` names; earlier reviews stay."""
        require(actor, "review")
        reviewer = _who(actor, "the reviewer's name")
        with self._session(write=True) as s:
            link = self._claim_image(s, ref)
            row = m.Review(sample_image=link, label=resolve_label(get_dataset(link.sample.dataset), label),
                           reviewer=reviewer, reviewer_subject=actor.subject[:m.NAME_LENGTH],
                           reviewer_email=actor.email, comment=_comment(comment))
            s.add(row)
            s.flush()
            self._audit(s, actor, "review", link.sample_id, link.id, file_name=link.file_name, label=row.label,
                        comment=row.comment, review_id=row.id)
            return _review_record(row)

    @_guard
    def history(self, name: str, file_name: str) -> list[ReviewRecord]:
        """Every review of one image, oldest first."""
        with self._session() as s:
            return [_review_record(r) for r in self._sample_image(s, name, file_name).reviews]

    # ------------------------------------------------------------------ tags

    @_guard
    def tag_image(self, actor: Actor, ref: ImageRef, tag: str, comment: str | None = None) -> TagRecord:
        """Tag the image ``ref`` names (tagging it again with the same tag replaces the comment and author;
        the audit log keeps what it replaced)."""
        require(actor, "tag")
        tag, author = _text(tag, "the tag"), _who(actor, "the author's name")
        with self._session(write=True) as s:
            link = self._claim_image(s, ref)
            row = next((t for t in link.tags if t.tag == tag), None)
            replaced = {"replaced": {"author": row.author, "author_subject": row.author_subject,
                                     "comment": row.comment}} if row else {}
            if row is None:
                row = m.SampleImageTag(tag=tag)
                link.tags.append(row)
            row.comment, row.author, row.created_at = _comment(comment), author, m.utc_now()
            row.author_subject, row.author_email = actor.subject[:m.NAME_LENGTH], actor.email
            self._audit(s, actor, "tag", link.sample_id, link.id, file_name=link.file_name, tag=tag,
                        comment=row.comment, **replaced)
            s.flush()
            return _tag_record(row)

    @_guard
    def untag_image(self, actor: Actor, ref: ImageRef, tag: str) -> bool:
        require(actor, "untag")
        with self._session(write=True) as s:
            link = self._claim_image(s, ref)
            found = [t for t in link.tags if t.tag == tag]
            for t in found:
                link.tags.remove(t)
            self._audit(s, actor, "untag", link.sample_id, link.id, file_name=link.file_name, tag=tag,
                        removed=[{"author": t.author, "author_subject": t.author_subject, "comment": t.comment}
                                 for t in found])
            return bool(found)

    @_guard
    def tag_dataset_image(self, actor: Actor, dataset: str, path: str, tag: str, comment: str | None = None
                          ) -> DatasetTagRecord:
        """Tag an image of a training dataset by its path in the dataset folder (again: replaces the comment and
        author; the audit log keeps what it replaced)."""
        require(actor, "tag")
        spec = get_dataset(dataset)
        path, tag = _text(path, "the image path", m.PATH_LENGTH), _text(tag, "the tag")
        author = _who(actor, "the author's name")
        with self._session(write=True) as s:
            row = s.scalars(select(m.DatasetImageTag).where(m.DatasetImageTag.dataset == spec.name,
                                                            m.DatasetImageTag.path == path,
                                                            m.DatasetImageTag.tag == tag)).one_or_none()
            replaced = {"replaced": {"author": row.author, "author_subject": row.author_subject,
                                     "comment": row.comment}} if row else {}
            if row is None:
                row = m.DatasetImageTag(dataset=spec.name, path=path, tag=tag)
                s.add(row)
            row.comment, row.author, row.created_at = _comment(comment), author, m.utc_now()
            row.author_subject, row.author_email = actor.subject[:m.NAME_LENGTH], actor.email
            self._audit(s, actor, "tag", dataset=spec.name, path=path, tag=tag, comment=row.comment, **replaced)
            s.flush()
            return _dataset_tag_record(row)

    @_guard
    def untag_dataset_image(self, actor: Actor, dataset: str, path: str, tag: str) -> bool:
        require(actor, "untag")
        spec = get_dataset(dataset)
        with self._session(write=True) as s:
            rows = s.scalars(select(m.DatasetImageTag).where(
                m.DatasetImageTag.dataset == spec.name, m.DatasetImageTag.path == path,
                m.DatasetImageTag.tag == tag)).all()
            for row in rows:
                s.delete(row)
            self._audit(s, actor, "untag", dataset=spec.name, path=path, tag=tag,
                        removed=[{"author": r.author, "author_subject": r.author_subject, "comment": r.comment}
                                 for r in rows])
            return bool(rows)

    @_guard
    def dataset_tags(self, dataset: str) -> list[DatasetTagRecord]:
        """Every tag on ``dataset``'s images, by path then tag."""
        with self._session() as s:
            rows = s.scalars(select(m.DatasetImageTag).where(m.DatasetImageTag.dataset == get_dataset(dataset).name)
                             .order_by(m.DatasetImageTag.path, m.DatasetImageTag.tag))
            return [_dataset_tag_record(r) for r in rows]

    # ------------------------------------------------------------------ export and the audit log

    @_guard
    def _log_export(self, actor: Actor, sample_id: int | None, **details) -> None:
        with self._session(write=True) as s:
            self._audit(s, actor, "export", sample_id, **details)

    def export_csv(self, actor: Actor, name: str) -> CsvExport:
        """Sample ``name`` as CSV for a user (one row per image, :func:`export_frame`; formula-safe), with the
        images it had to skip; the export is logged."""
        require(actor, "export")
        detail = self.sample(name)
        frame = export_frame(detail)
        self._log_export(actor, detail.summary.id, what="sample", name=name, rows=len(frame),
                         skipped=list(detail.problems))
        return CsvExport(csv_text(frame), detail.problems)

    @_guard
    def audit_log(self, actor: Actor, sample_id: int | None = None, limit: int | None = None) -> list[AuditRecord]:
        """The audit log, newest first (of one sample with ``sample_id``; the newest ``limit`` entries)."""
        require(actor, "audit")
        with self._session() as s:
            query = select(m.AuditEntry).order_by(m.AuditEntry.id.desc())
            if sample_id is not None:
                query = query.where(m.AuditEntry.sample_id == sample_id)
            if limit is not None:
                query = query.limit(limit)
            return [_audit_record(r) for r in s.scalars(query)]

    def audit_csv(self, actor: Actor, sample_id: int | None = None) -> str:
        """The audit log as CSV for a user (formula-safe); the export itself is logged."""
        require(actor, "export")
        entries = self.audit_log(actor, sample_id)
        self._log_export(actor, sample_id, what="audit log", rows=len(entries))
        return csv_text(audit_frame(entries))
