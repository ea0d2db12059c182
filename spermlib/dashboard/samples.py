"""Which model may honestly classify an image on the Classify page.

The bundled samples (``sample_data/<Dataset folder>/``) are images of the full datasets, so each lies
in one test fold of the committed split manifest (``splits/<dataset>.csv``; sample paths are the
manifest's paths) and is training data of the other four fold models. The 5-fold ensemble therefore
scores the SMIDS samples 100 % correct where the out-of-fold accuracy is 80 %: it mostly remembers
them. A bundled sample is classified by the fold model whose test fold holds it, which never saw it;
an uploaded image, which no model has seen, by the ensemble of every installed fold model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from spermlib.data.datasets import DatasetSpec
from spermlib.data.splits import manifest_path, read_manifest


@dataclass(frozen=True)
class Route:
    """Which model classifies one image: the fold-``fold`` model alone, or (``fold is None``) the
    ensemble; ``model`` names it in a table, ``note`` tells the reader why (empty for uploads)."""

    fold: int | None
    model: str
    note: str = ""

    @property
    def single_fold(self) -> bool:
        return self.fold is not None


def sample_folds(spec: DatasetSpec, manifest_file: str | Path | None = None) -> dict[str, int]:
    """Path (relative to the dataset folder) → its test fold in the split manifest (-1: excluded)."""
    manifest = read_manifest(Path(manifest_file) if manifest_file else manifest_path(spec))
    return dict(zip(manifest["path"], manifest["fold"].astype(int)))


def ensemble_route(installed: Sequence[int], note: str = "") -> Route:
    return Route(None, f"ensemble of {len(installed)} fold models", note)


def sample_route(held_out: int | None, installed: Sequence[int]) -> Route:
    """The route of a bundled sample whose test fold is ``held_out`` (``None``: not in the manifest,
    -1: excluded from the cross-validation), given the installed fold models."""
    n = len(installed)
    if held_out is None:
        return ensemble_route(installed, f"This sample is not in the split manifest, so which of the {n} fold "
                                         "models trained on it is unknown: the result may be optimistic.")
    if held_out < 0:
        return ensemble_route(installed, "This sample is excluded from the cross-validation (a pixel-identical "
                                         f"copy carries another label), so none of the {n} fold models saw it.")
    if held_out not in installed:
        return ensemble_route(installed, f"The fold-{held_out} model, the only one that never saw this sample, is "
                                         f"not installed: the ensemble of the other {n} was trained on it, so the "
                                         "result is optimistic.")
    return Route(held_out, f"fold-{held_out} model (never saw it)",
                 f"Classified by the fold-{held_out} model, which never saw this image: it is in fold {held_out}'s "
                 f"test set. The other fold models were trained on it, so their ensemble would mostly remember it.")


def routes(n_uploads: int, samples: Sequence[str], folds: dict[str, int], installed: Sequence[int]) -> list[Route]:
    """Routes in input order: ``n_uploads`` uploaded images (the ensemble), then the bundled ``samples``."""
    return [ensemble_route(installed)] * n_uploads + [sample_route(folds.get(s), installed) for s in samples]
