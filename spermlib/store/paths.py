"""Default folders of the on-disk store: ``checkpoints/``, ``results/``, ``runs/``, ``datasets.json``.

Read at call time (not import time) so tests and the app can redirect them with
``$SPERMLIB_CHECKPOINTS``, ``$SPERMLIB_RESULTS`` and ``$SPERMLIB_DATASETS``.
"""

from __future__ import annotations

import os
from pathlib import Path

from spermlib.data.datasets import PROJECT_ROOT

CHECKPOINTS_ENV = "SPERMLIB_CHECKPOINTS"
RESULTS_ENV = "SPERMLIB_RESULTS"
DATASETS_ENV = "SPERMLIB_DATASETS"
RUNS_DIR = PROJECT_ROOT / "runs"  # training logs and resumable state (ignored by git)
PARTIAL_RESULTS_DIR = RUNS_DIR / "results"  # evaluations on a subset (e.g. the bundled sample)


def default_checkpoints_dir() -> Path:
    """``$SPERMLIB_CHECKPOINTS`` or ``checkpoints/``."""
    return Path(os.environ.get(CHECKPOINTS_ENV) or PROJECT_ROOT / "checkpoints")


def default_results_dir() -> Path:
    """``$SPERMLIB_RESULTS`` or ``results/`` (published evaluations on the full datasets)."""
    return Path(os.environ.get(RESULTS_ENV) or PROJECT_ROOT / "results")


def dataset_registry_path() -> Path:
    """``$SPERMLIB_DATASETS`` or ``datasets.json``: the own datasets ``splits`` recorded (name, path, classes, …)."""
    return Path(os.environ.get(DATASETS_ENV) or PROJECT_ROOT / "datasets.json")


def project_relative(path: Path) -> str:
    """``path`` relative to the project root when it lies inside it (what results files record)."""
    path = Path(path)
    return str(path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path)


def fold_run_dir(dataset: str, arch: str, fold: int, runs_dir: Path | None = None) -> Path:
    """``<runs>/<dataset>/<arch>/fold<K>/``: a fold's training log and resumable state."""
    return Path(runs_dir or RUNS_DIR) / dataset / arch / f"fold{fold}"
