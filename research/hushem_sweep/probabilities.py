"""Per candidate folder of the HuSHeM recipe sweep: every fold model's class probabilities on its inner-validation
images (what a nested choice may look at) and on its test fold (out of fold), one view and with 8-view TTA, as
``<candidate>.<arch>.json`` (``research/results/sweeps/hushem_gpu/probabilities/``).

    python -m research.hushem_sweep.probabilities --data-dir ../shared/data --checkpoints runs/remote/ck \\
        --out PROBS [--device cuda] [CANDIDATE ...]        # candidate folders under --checkpoints; default all
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from spermlib.data.datasets import get_dataset, resolve_data_root
from spermlib.data.preprocess import load_uint8_batch
from spermlib.data.splits import fold_parts, manifest_for_root
from spermlib.inference.core import EVAL_BATCH, InferenceModel
from spermlib.runtime import pick_device
from spermlib.store.checkpoints import available_folds, checkpoint_path, load_checkpoint

ARCHS = ("effnet_cbam", "effnet")


def fold_probabilities(spec, root: Path, manifest, sha: str, fm: InferenceModel, k: int, card: dict) -> dict:
    """One fold model's paths, labels and probabilities (one view, TTA) on its inner validation and test fold."""
    if card["split_sha256"] != sha:
        raise SystemExit(f"fold {k}: the model was trained on another split")
    _, val, test = fold_parts(manifest, k, val_fraction=card["recipe"]["val_fraction"])
    r = {"inner_val_f1_card": (card.get("inner_val") or {}).get("macro_f1")}
    for part, df in (("val", val), ("test", test)):
        x = load_uint8_batch(root, list(df["path"]), fm.prep.input_size)
        r[f"{part}_paths"] = list(df["path"])
        r[f"{part}_y"] = [spec.class_dirs.index(c) for c in df["label"]]
        for tta in (False, True):
            p = fm(x, batch_size=EVAL_BATCH, tta=tta).probabilities
            r[f"{part}_p{'_tta' if tta else ''}"] = np.round(p, 5).tolist()
    return r


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--checkpoints", type=Path, required=True, help="folder of candidate checkpoint folders")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default=None)
    ap.add_argument("candidates", nargs="*", help="candidate folder names (default: every one)")
    args = ap.parse_args(argv)
    spec = get_dataset("hushem")
    root = resolve_data_root(spec, args.data_dir)
    manifest, sha = manifest_for_root(spec, root)
    dev = pick_device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    for cand in [args.checkpoints / c for c in args.candidates] or sorted(args.checkpoints.iterdir()):
        for arch in ARCHS:
            res = {}
            for k in available_folds(spec, arch, cand):
                model, card = load_checkpoint(checkpoint_path(spec, arch, k, cand))
                res[k] = fold_probabilities(spec, root, manifest, sha, InferenceModel.from_card(model, card, dev), k,
                                            card)
            if res:
                (args.out / f"{cand.name}.{arch}.json").write_text(json.dumps(res))
                print("probabilities", cand.name, arch, sorted(res), flush=True)


if __name__ == "__main__":
    main()
