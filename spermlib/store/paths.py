"""Default folders of the on-disk store: ``checkpoints/``, ``results/``, ``runs/``.

Read at call time (not import time) so tests and the app can redirect them with
``$SPERMLIB_CHECKPOINTS`` and ``$SPERMLIB_RESULTS``. The own-dataset registry (``datasets.json``,
``$SPERMLIB_DATASETS``) belongs to the data layer: ``data.datasets.dataset_registry_path``.
"""

from __future__ import annotations

import os
from pathlib import Path

from spermlib.data.datasets import PROJECT_ROOT

CHECKPOINTS_ENV = "SPERMLIB_CHECKPOINTS"
RESULTS_ENV = "SPERMLIB_RESULTS"
RUNS_DIR = PROJECT_ROOT / "runs"  # training logs and resumable state (ignored by git)
PARTIAL_RESULTS_DIR = RUNS_DIR / "results"  # evaluations on a subset (e.g. the bundled sample)


def default_checkpoints_dir() -> Path:
    """``$SPERMLIB_CHECKPOINTS`` or ``checkpoints/``."""
    return Path(os.environ.get(CHECKPOINTS_ENV) or PROJECT_ROOT / "checkpoints")


def default_results_dir() -> Path:
    """``$SPERMLIB_RESULTS`` or ``results/`` (published evaluations on the full datasets)."""
    return Path(os.environ.get(RESULTS_ENV) or PROJECT_ROOT / "results")


def project_relative(path: Path) -> str:
    """``path`` relative to the project root when it lies inside it (what results files record)."""
    path = Path(path)
    return str(path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path)


def fold_run_dir(dataset: str, arch: str, fold: int, runs_dir: Path | None = None) -> Path:
    """``<runs>/<dataset>/<arch>/fold<K>/``: a fold's training log and resumable state."""
    return Path(runs_dir or RUNS_DIR) / dataset / arch / f"fold{fold}"
