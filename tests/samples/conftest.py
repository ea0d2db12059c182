"""Fixtures of the samples-store tests: a temporary database — SQLite and PostgreSQL, each test runs on both —
and saved samples without a model run."""

from __future__ import annotations

import threading

import pytest

from spermlib.data.datasets import SAMPLE_DATA_ROOT
from spermlib.samples.access import Actor, Role
from spermlib.samples.db import DB_URL_ENV
from spermlib.samples.service import NewImage, PredictionRecord, SampleStore
from tests.postgres import postgres_server, postgres_url  # noqa: F401  (fixtures: the throwaway server)

SMIDS_NORMAL = sorted((SAMPLE_DATA_ROOT / "SMIDS" / "Normal_Sperm").iterdir())
SMIDS_ABNORMAL = sorted((SAMPLE_DATA_ROOT / "SMIDS" / "Abnormal_Sperm").iterdir())
DIGESTS = {"effnet_cbam": {"folds": [0], "weights_sha256": {"0": "ab" * 32}}}
ADMIN = Actor("https://idp.example|admin-1", Role.ADMIN, "admin@lab.org", "Dr Admin")
REVIEWER = Actor("https://idp.example|alice-1", Role.REVIEWER, "alice@lab.org", "alice")
VIEWER = Actor("https://idp.example|victor-1", Role.VIEWER, None, "Victor")


def as_reviewer(name: str) -> Actor:
    """A reviewer shown as ``name`` (no email: the display is the name alone)."""
    return Actor(f"https://idp.example|{name}", Role.REVIEWER, None, name)


BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path, monkeypatch) -> str:
    """A fresh database: an SQLite file, or an empty PostgreSQL database on a throwaway server started for the
    session (tests/postgres.py); also ``$SPERMLIB_DB_URL``, so nothing touches the user's own database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'samples.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    monkeypatch.setenv(DB_URL_ENV, url)
    return url


@pytest.fixture
def store(db_url) -> SampleStore:
    s = SampleStore.open(db_url)
    yield s
    s.close()


def verdict(label: str, confidence: float = 0.9, in_domain: bool | None = None, agreement: float = 1.0,
            arch: str = "effnet_cbam") -> dict[str, PredictionRecord]:
    """A made-up SMIDS verdict (no model run), keyed by arch as ``NewImage.predictions`` wants it."""
    others = [c for c in ("Normal_Sperm", "Abnormal_Sperm", "Non-Sperm") if c != label]
    probs = {label: confidence, others[0]: (1 - confidence) / 2, others[1]: (1 - confidence) / 2}
    return {arch: PredictionRecord(arch, label, confidence, probs, (label,) * 5, agreement, "ensemble of 5 fold models",
                                   in_domain, None if in_domain is None else (0.9 if in_domain else 0.1))}


def save_smids(store: SampleStore, name: str, labels: list[str], actor: Actor = ADMIN, **kwargs) -> list[str]:
    """Save bundled SMIDS images as sample ``name`` with made-up verdicts ``labels``; returns the file names."""
    files = (SMIDS_NORMAL + SMIDS_ABNORMAL)[: len(labels)]
    images = [NewImage(f.name, f.read_bytes(), verdict(label, **kwargs)) for f, label in zip(files, labels)]
    store.save_sample(actor, name, "smids", "effnet_cbam", images, DIGESTS, code_version="test")
    return [f.name for f in files]


def run_at_once(target, n: int) -> None:
    """Run ``target(k)`` for k in 0..n-1, each on its own thread, and wait for them all."""
    threads = [threading.Thread(target=target, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
