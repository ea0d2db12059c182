"""Per candidate folder under runs/gpu: every fold model's class probabilities on its inner-validation images
(what a nested choice may look at) and on its test fold (out of fold), plain and with 8-view TTA."""
import json
import sys
from pathlib import Path

import numpy as np

from spermlib.data.datasets import get_dataset, resolve_data_root
from spermlib.data.preprocess import load_uint8_batch
from spermlib.data.splits import fold_parts, manifest_for_root
from spermlib.inference.core import EVAL_BATCH, InferenceModel
from spermlib.runtime import pick_device
from spermlib.store.checkpoints import available_folds, checkpoint_path, load_checkpoint

spec = get_dataset("hushem")
root = resolve_data_root(spec, sys.argv[1])
manifest, sha = manifest_for_root(spec, root)
dev = pick_device(sys.argv[3] if len(sys.argv) > 3 else None)
out_dir = Path(sys.argv[2])
out_dir.mkdir(parents=True, exist_ok=True)
# usage: probabilities.py DATA_DIR OUT_DIR DEVICE [CANDIDATE ...] (candidate folders under runs/gpu; default all)
for cand in [Path("runs/gpu") / c for c in sys.argv[4:]] or sorted(Path("runs/gpu").iterdir()):
    for arch in ("effnet_cbam", "effnet"):
        folds = available_folds(spec, arch, cand)
        if not folds:
            continue
        res = {}
        for k in folds:
            model, card = load_checkpoint(checkpoint_path(spec, arch, k, cand))
            assert card["split_sha256"] == sha
            fm = InferenceModel.from_card(model, card, dev)
            _, val, test = fold_parts(manifest, k, val_fraction=card["recipe"]["val_fraction"])
            r = {"inner_val_f1_card": (card.get("inner_val") or {}).get("macro_f1")}
            for part, df in (("val", val), ("test", test)):
                x = load_uint8_batch(root, list(df["path"]), fm.prep.input_size)
                r[f"{part}_paths"] = list(df["path"])
                r[f"{part}_y"] = [spec.class_dirs.index(c) for c in df["label"]]
                for tta in (False, True):
                    p = fm(x, batch_size=EVAL_BATCH, tta=tta).probabilities
                    r[f"{part}_p{'_tta' if tta else ''}"] = np.round(p, 5).tolist()
            res[k] = r
        (out_dir / f"{cand.name}.{arch}.json").write_text(json.dumps(res))
        print("probs", cand.name, arch, folds, flush=True)
