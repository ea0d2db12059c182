"""Where the models on screen come from, for the footer of every page: read from the checkpoint cards.

Each fold checkpoint's JSON card records the git commit and spermlib version it was trained with
(``git_commit``, ``spermlib_version``) and when (``created``); a reader of a screenshot can tell which
models produced it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from spermlib.archs import ARCHS
from spermlib.dashboard.tables import arch_title
from spermlib.data.datasets import DATASETS, get_dataset
from spermlib.store.cards import (
    CheckpointError,
    available_folds,
    card_path,
    checkpoint_path,
    fold_cards,
    listed_datasets,
)
from spermlib.version import __version__


@dataclass(frozen=True)
class ModelVersions:
    """The installed fold models of one dataset × arch and what their cards say."""

    dataset: str
    arch: str
    folds: tuple[int, ...]
    commits: tuple[str, ...]  # distinct, in fold order
    versions: tuple[str, ...]  # distinct spermlib versions
    dates: tuple[str, ...]  # distinct training dates (YYYY-MM-DD)
    error: str | None = None  # an unreadable card

    def line(self) -> str:
        """E.g. ``SMIDS · EfficientNet + CBAM: 5 folds, spermlib 0.1.0, commits a, b (2026-11-25)``."""
        where = f"{get_dataset(self.dataset).folder} · {arch_title(self.arch)}"
        if self.error:
            return f"{where}: {self.error}"
        commits = ", ".join(self.commits) or "commit not recorded"
        label = "commit" if len(self.commits) == 1 else "commits"
        version = ", ".join(self.versions) or "?"
        when = f" ({span(self.dates)})" if self.dates else ""
        return f"{where}: {len(self.folds)} fold{'s' if len(self.folds) != 1 else ''}, spermlib {version}, " \
               f"{label} {commits}{when}"


def _distinct(values) -> tuple[str, ...]:
    return tuple(dict.fromkeys(str(v) for v in values if v))


def span(dates: Sequence[str]) -> str:
    """``"2026-11-25"`` or ``"2026-11-25 – 2026-11-26"`` (first – last)."""
    ordered = sorted(set(dates))
    return ordered[0] if len(ordered) == 1 else f"{ordered[0]} – {ordered[-1]}"


def model_versions(checkpoints_dir: Path | None = None) -> list[ModelVersions]:
    """One entry per dataset × arch with at least one fold card, in registry order."""
    out = []
    for dataset in listed_datasets(checkpoints_dir):
        for arch in ARCHS:
            try:
                cards = fold_cards(dataset, arch, checkpoints_dir)
            except CheckpointError as err:
                out.append(ModelVersions(dataset, arch, (), (), (), (), error=str(err)))
                continue
            if not cards:
                continue
            ordered = [cards[k] for k in sorted(cards)]
            out.append(ModelVersions(
                dataset, arch, tuple(sorted(cards)), _distinct(c.get("git_commit") for c in ordered),
                _distinct(c.get("spermlib_version") for c in ordered),
                _distinct(str(c.get("created", ""))[:10] for c in ordered)))
    return out


def summary(versions: Sequence[ModelVersions]) -> str:
    """One line: this app's version and how many fold models are installed, trained when."""
    n = sum(len(v.folds) for v in versions)
    if not n:
        return f"spermlib {__version__} · no trained models installed"
    dates = [d for v in versions for d in v.dates]
    when = f", trained {span(dates)}" if dates else ""
    return f"spermlib {__version__} · {n} fold models installed{when}"


def cards_stamp(checkpoints_dir: Path) -> tuple:
    """Changes whenever a checkpoint card is written, so that cached versions refresh."""
    cards = [card_path(checkpoint_path(spec, arch, k, checkpoints_dir)) for spec in DATASETS.values() for arch in ARCHS
             for k in available_folds(spec, arch, checkpoints_dir, suffix=".json")]
    return tuple((str(c), c.stat().st_mtime_ns) for c in cards if c.is_file())


def citations() -> str:
    """The built-in datasets' citations, one line."""
    return " · ".join(f"**{spec.folder}**: {spec.citation}" for spec in DATASETS.values())


def about() -> str:
    """The app menu's "About" text: what this is, which version, and what it is not."""
    return (f"spermlib {__version__}: interpretable sperm-morphology classification (EfficientNet + CBAM, "
            "Grad-CAM++). A research tool, not a diagnostic device.")
