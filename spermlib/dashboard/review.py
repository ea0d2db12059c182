"""View-models of what users save: the review queue of a sample, who acts, the tables of samples, review
histories, tags and the audit log, and turning the Classify page's verdicts into a sample to save.

Who may do what is the samples service's decision (it refuses a call without the role); the pages only hide
the controls a role may not use (:data:`~spermlib.samples.access.ACTIONS`, ``Actor.can``).

The queue shows the images that need an expert most first: out of domain (the models may not know such
images), then low confidence, then fold disagreement (the thresholds of :mod:`spermlib.dashboard.triage`),
each group by rising confidence; reviewed images go last.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

import pandas as pd

from spermlib.dashboard.triage import LOW_CONFIDENCE, MIN_AGREEMENT, ArchResult, ImageInput
from spermlib.data.datasets import DatasetSpec
from spermlib.fileio import csv_text
from spermlib.samples.access import Actor
from spermlib.samples.db import SampleStoreError, default_db_url
from spermlib.samples.service import (
    AuditRecord,
    DatasetTagRecord,
    ImageRecord,
    NewImage,
    PredictionRecord,
    ReviewRecord,
    SampleChanged,
    SampleStore,
    SampleSummary,
    audit_frame,
    checkpoint_digests,
)

if TYPE_CHECKING:
    from spermlib.inference.predict import Predictor

__all__ = ["SampleChanged", "SampleStore", "SampleStoreError", "default_db_url"]  # what the pages hold and catch

LOCAL_TOOL_NOTE = ("Single-user local tool: no login is configured, so whoever opens this app acts as its local "
                   "administrator. Configure authentication before serving it to a network.")
AUDIT_ROWS_SHOWN = 200

# Tags offered in the explorers (any other text is accepted too), after FiftyOne users' habits.
SUGGESTED_TAGS = ("label suspect", "two cells", "blurry", "not a sperm cell", "cropped", "duplicate")
NEED_REASONS = ("out of domain", "low confidence", "fold disagreement")  # in order of urgency


@dataclass(frozen=True)
class QueueItem:
    image: ImageRecord
    prediction: PredictionRecord | None
    reasons: tuple[str, ...]  # members of NEED_REASONS

    @property
    def reviewed(self) -> bool:
        return bool(self.image.reviews)

    @property
    def sort_key(self) -> tuple:
        urgency = min((NEED_REASONS.index(r) for r in self.reasons), default=len(NEED_REASONS))
        confidence = self.prediction.confidence if self.prediction else 0.0
        return (self.reviewed, urgency, confidence, self.image.file_name)


def need_reasons(pred: PredictionRecord | None) -> tuple[str, ...]:
    """Why an image needs an expert, most urgent first (empty: nothing flagged)."""
    if pred is None:
        return ()
    flags = (pred.in_domain is False, pred.confidence < LOW_CONFIDENCE,
             pred.agreement is not None and len(pred.fold_labels) > 1 and pred.agreement < MIN_AGREEMENT)
    return tuple(r for r, flagged in zip(NEED_REASONS, flags) if flagged)


def review_queue(images: Sequence[ImageRecord], arch: str) -> list[QueueItem]:
    items = [QueueItem(i, i.predictions.get(arch), need_reasons(i.predictions.get(arch))) for i in images]
    return sorted(items, key=lambda item: item.sort_key)


def reviewing_as(actor: Actor, typed_name: str | None) -> Actor:
    """The local user under the name typed on the page (without authentication): the subject stays the
    local user's, the name is what reviews and tags show."""
    name = (typed_name or "").strip()
    return dataclasses.replace(actor, name=name) if name else actor


def samples_table(samples: Sequence[SampleSummary]) -> pd.DataFrame:
    return pd.DataFrame([{"sample": s.name, "task": s.dataset, "model": s.arch, "images": s.n_images,
                          "reviewed": s.n_reviewed, "created (UTC)": s.created_at.strftime("%Y-%m-%d %H:%M")}
                         for s in samples], columns=["sample", "task", "model", "images", "reviewed", "created (UTC)"])


def history_table(reviews: Sequence[ReviewRecord], spec: DatasetSpec) -> pd.DataFrame:
    """Every review of an image, newest first."""
    return pd.DataFrame([{"when (UTC)": r.created_at.strftime("%Y-%m-%d %H:%M:%S"), "label": spec.display(r.label),
                          "reviewer": r.reviewer, "comment": r.comment or ""} for r in reversed(reviews)],
                        columns=["when (UTC)", "label", "reviewer", "comment"])


def tags_table(tags: Sequence[DatasetTagRecord]) -> pd.DataFrame:
    return pd.DataFrame([{"path": t.path, "tag": t.tag, "comment": t.comment or "", "author": t.author,
                          "when (UTC)": t.created_at.strftime("%Y-%m-%d %H:%M")} for t in tags],
                        columns=["path", "tag", "comment", "author", "when (UTC)"])


def filter_tags(table: pd.DataFrame, tags: Sequence[str]) -> pd.DataFrame:
    """Rows with any of ``tags`` (all rows when none is chosen)."""
    return table[table["tag"].isin(tags)] if tags else table


def csv_bytes(table: pd.DataFrame) -> bytes:
    """A table as a CSV download (cells a spreadsheet would run as formulas neutralised)."""
    return csv_text(table).encode("utf-8")


def audit_table(entries: Sequence[AuditRecord]) -> pd.DataFrame:
    return audit_frame(entries)


def download_name(name: str, suffix: str) -> str:
    """A sample name as a download's file name (no folders, no characters a file system refuses)."""
    stem = re.sub(r"[^\w .()-]+", "_", name).strip(" .") or "sample"
    return f"{stem[:100]}{suffix}"


def unique_file_names(names: Sequence[str]) -> list[str]:
    """``names`` with each repeat numbered like a file manager does (``image_001.BMP``, ``image_001 (2).BMP``):
    HuSHeM has an ``image_001.BMP`` in every class folder, and two uploads of that name are two images."""
    taken, unique = set(names), []
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        if seen[name] == 1:
            unique.append(name)
            continue
        path, k = PurePosixPath(name), seen[name]
        while (candidate := str(path.with_name(f"{path.stem} ({k}){path.suffix}"))) in taken:
            k += 1
        taken.add(candidate)
        unique.append(candidate)
    return unique


def classify_to_sample(inputs: Sequence[ImageInput], results: Mapping[str, Sequence[ArchResult | None]],
                       predictors: Mapping[str, Predictor]) -> tuple[list[NewImage], dict]:
    """The Classify page's decoded inputs and verdicts as images to save (failed files left out; repeated
    upload names numbered, :func:`unique_file_names`), with the checkpoint digests of every arch that
    classified them (a bundled sample's single fold model included)."""
    images = []
    names = unique_file_names([item.name for item in inputs])
    for i, item in enumerate(inputs):
        verdicts = {arch: res[i] for arch, res in results.items() if res[i] is not None}
        if item.error or not verdicts:
            continue
        images.append(NewImage(names[i], item.data, {
            arch: PredictionRecord.from_prediction(arch, r.prediction, r.route.model if r.route else "ensemble")
            for arch, r in verdicts.items()}, item.width, item.height))
    return images, {arch: checkpoint_digests(p) for arch, p in predictors.items()}


def open_store(url: str) -> SampleStore:
    """The samples store at database ``url`` (:func:`default_db_url`: ``$SPERMLIB_DB_URL`` or the project's
    SQLite file); :class:`SampleStoreError` when it cannot be opened (locked, corrupt, newer)."""
    return SampleStore.open(url)


def report_files(store: SampleStore, name: str, predictor: Predictor | None) -> tuple[bytes, str]:
    """Sample ``name``'s report as (PDF, HTML): counts, the share of normal forms, and, with ``predictor``,
    the Grad-CAM++ maps of the reviewed images."""
    from spermlib.samples.report import build_report, render_html, render_pdf  # torch: only when asked

    report = build_report(store, name, predictor=predictor, with_cams=predictor is not None)
    return render_pdf(report), render_html(report)
