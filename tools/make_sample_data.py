"""Rebuild the bundled sample (sample_data/) from the full datasets: 4 images per class per fold.

Run from the project root: ``python tools/make_sample_data.py [--data-dir ../shared/data]``.
The selection is deterministic (first images by path within each fold and class); for SMIDS one
conflicting-label duplicate pair is added so the dataset explorer can show how it is handled.
"""

from __future__ import annotations

import argparse
import shutil

import pandas as pd

from spermlib.data.datasets import DATASETS, SAMPLE_DATA_ROOT, resolve_data_root
from spermlib.data.splits import CONFLICT, manifest_path, read_manifest

PER_CLASS_PER_FOLD = 4


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="../shared/data")
    args = ap.parse_args()
    for spec in DATASETS.values():
        src = resolve_data_root(spec, args.data_dir)
        dst = SAMPLE_DATA_ROOT / spec.folder
        shutil.rmtree(dst, ignore_errors=True)
        m = read_manifest(manifest_path(spec))
        chosen = (m[m["fold"] >= 0].sort_values("path").groupby(["fold", "label"]).head(PER_CLASS_PER_FOLD))
        conflicts = m[m["excluded"] == CONFLICT]
        if len(conflicts):
            first_group = conflicts["group"].min()
            chosen = pd.concat([chosen, conflicts[conflicts["group"] == first_group]])
        for p in sorted(chosen["path"]):
            (dst / p).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / p, dst / p)
        for f in ("SOURCE.md",):
            shutil.copy2(src / f, dst / f)
        print(f"{spec.name}: {len(chosen)} images → {dst}")


if __name__ == "__main__":
    main()
