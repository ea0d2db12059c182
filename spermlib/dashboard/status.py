"""What this installation has: data roots (full or bundled sample) and trained checkpoints."""

from __future__ import annotations

from pathlib import Path

from spermlib.archs import ARCHS
from spermlib.data.datasets import DATASETS, DataError, is_full_dataset, list_images, resolve_data_root
from spermlib.store.cards import available_folds


def installation_status(data_dir: str | None = None, checkpoints_dir: Path | None = None) -> list[dict]:
    rows = []
    for spec in DATASETS.values():
        try:
            root = resolve_data_root(spec, data_dir)
            n = len(list_images(spec, root))
            data = f"{'full dataset' if is_full_dataset(root) else 'bundled sample'}: {n} images ({root})"
        except DataError as err:
            data = f"unavailable: {err}"
        ckpt = {a: len(available_folds(spec, a, checkpoints_dir)) for a in ARCHS}
        rows.append({
            "dataset": spec.title,
            "data": data,
            "checkpoints": ", ".join(f"{a}: {k} folds" for a, k in ckpt.items() if k) or "",
            "citation": spec.citation,
        })
    return rows
