"""``spermlib splits``: the leakage-free fold manifest of a dataset."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spermlib.cli.common import add_commands, add_data_args
from spermlib.data.datasets import resolve_data_root


def _splits_args(p: argparse.ArgumentParser) -> None:
    add_data_args(p)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=None, help="split seed (default: the project's fixed seed)")
    p.add_argument("--out", default=None, help="manifest path (default splits/<dataset>.csv)")
    p.add_argument("--name", default=None, help="own dataset: its name (default: the folder's name, lower-case)")
    p.add_argument("--citation", default=None, help="own dataset: how to cite it (shown with its results)")
    p.add_argument("--display-names", default=None, dest="display_names",
                   help="own dataset: comma-separated class names to show, in the (sorted) order of its class folders")


def cmd_splits(args: argparse.Namespace) -> int:
    from spermlib.data.datasets import dataset_for_split, non_image_files, register_dataset
    from spermlib.data.splits import SPLIT_SEED, assign_folds, check_fold_counts, hash_images, report, write_manifest
    from spermlib.data.splits import manifest_path as default_manifest

    spec = dataset_for_split(args.dataset, args.name, args.citation,
                             tuple(args.display_names.split(",")) if args.display_names else None)
    root = resolve_data_root(spec, args.data_dir)
    print(f"hashing {spec.name} images under {root} …", file=sys.stderr)
    df = assign_folds(hash_images(spec, root), n_folds=args.folds,
                      seed=SPLIT_SEED if args.seed is None else args.seed)
    rep = report(df)
    for what, files in (("not images (by suffix)", non_image_files(spec, root)),
                        ("not decodable (in the manifest as fold -1, excluded = unreadable)", rep.unreadable)):
        if files:
            print(f"skipped {len(files)} file(s), {what}:\n" + "\n".join(f"  {f}" for f in files))
    if not spec.is_builtin:  # (the built-in datasets are large enough; their CLI behaviour stays as it was)
        check_fold_counts(df, args.folds)
    print(f"{rep.n_images} images, {rep.n_groups} pixel-identical groups, "
          f"{len(rep.duplicate_groups)} groups with duplicates")
    if rep.conflicting_groups:
        print(f"{len(rep.conflicting_groups)} duplicate groups have conflicting labels; "
              "excluded from training and evaluation (fold -1):")
        for g in rep.conflicting_groups:
            print("  " + "  =  ".join(f"{p} [{lab}]" for p, lab in g))
    print("images per fold and class (fold -1 = excluded):")
    print(rep.fold_counts.to_string())
    out = Path(args.out) if args.out else default_manifest(spec)
    sha = write_manifest(df, out)  # after the report: an unwritable --out still leaves the report on screen
    print(f"wrote {out} (sha256 {sha[:12]}…)")
    if not spec.is_builtin:
        print(f"recorded {spec.name} ({root}, classes {', '.join(spec.class_dirs)}) in {register_dataset(spec)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    add_commands(sub, (
        ("splits", "write the leakage-free 5-fold split manifest splits/<dataset>.csv", _splits_args, cmd_splits),
    ))
