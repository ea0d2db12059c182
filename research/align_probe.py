"""Head alignment, measured before anything depends on it (accuracy issue, lever 1).

``write``: a pose-normalised copy of a dataset (``spermlib.data.align.align_head`` on every image; same
relative paths, so the committed split manifest applies unchanged and ``train``/``evaluate --data-dir``
read it as they read the original), plus ``aligned.csv`` saying for which images a head was found.

``score``: out-of-fold scores of one fold-checkpoint folder on such a copy, one view and with the mirror
(the test-time views an aligned model was trained on: aligned heads keep their axis upright, so the
dihedral 8 views of ``evaluate --tta`` would show it poses it never saw).

    python -m research.align_probe write --data-dir ../shared/data --dataset hushem --out /tmp/aligned
    python -m research.align_probe score --data-dir /tmp/aligned --dataset hushem --checkpoints runs/align/ck \\
        --arch effnet
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from sklearn.metrics import accuracy_score, f1_score
from tqdm.auto import tqdm

from spermlib.data.align import align_head
from spermlib.data.datasets import get_dataset, list_images, resolve_data_root
from spermlib.data.imageio import load_rgb


def write(args: argparse.Namespace) -> None:
    spec = get_dataset(args.dataset)
    root = resolve_data_root(spec, args.data_dir)
    out = Path(args.out) / spec.folder
    rows = []
    for p in tqdm(list(list_images(spec, root)["path"]), desc="align"):
        a = align_head(np.asarray(load_rgb(root / p, name=p)))
        (out / p).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a.image).save(out / p, format="BMP")
        rows.append({"path": p, "found": a.found, "angle_deg": round(a.angle_deg, 2)})
    df = pd.DataFrame(rows)
    df.to_csv(Path(args.out) / "aligned.csv", index=False)
    print(f"{int(df['found'].sum())} of {len(df)} heads found and aligned; the rest copied unchanged -> {out}")


def score(args: argparse.Namespace) -> None:
    from spermlib.data.preprocess import load_uint8_batch
    from spermlib.data.splits import manifest_for_root
    from spermlib.inference.core import InferenceModel
    from spermlib.store.cards import checkpoint_path
    from spermlib.store.checkpoints import load_checkpoint

    spec = get_dataset(args.dataset)
    root = resolve_data_root(spec, args.data_dir)
    manifest, _ = manifest_for_root(spec, root)
    usable = manifest[manifest["fold"] >= 0]
    cls = {c: i for i, c in enumerate(spec.class_dirs)}
    y_all, p1_all, p2_all, p8_all = [], [], [], []
    for k in sorted(usable["fold"].unique()):
        test = usable[usable["fold"] == k]
        model, card = load_checkpoint(checkpoint_path(spec, args.arch, int(k), Path(args.checkpoints)))
        core = InferenceModel.from_card(model, card)
        x = load_uint8_batch(root, list(test["path"]), core.prep.input_size)
        p1 = torch.from_numpy(core(x).probabilities)
        p2 = (p1 + torch.from_numpy(core(x.flip(-1)).probabilities)) / 2
        p8_all.append(torch.from_numpy(core(x, tta=True).probabilities))
        y_all += [cls[c] for c in test["label"]]
        p1_all.append(p1)
        p2_all.append(p2)
    y = np.array(y_all)
    if args.out:  # per-image probabilities of each view set, in fold order, for combining runs offline
        paths = [p for k in sorted(usable["fold"].unique()) for p in usable[usable["fold"] == k]["path"]]
        np.savez(args.out, paths=np.array(paths), y=y, one=torch.cat(p1_all).numpy(), mirror=torch.cat(p2_all).numpy(),
                 d8=torch.cat(p8_all).numpy())
    out = {}
    for name, ps in (("one view", p1_all), ("mirror x2", p2_all), ("d8 x8", p8_all)):
        pred = torch.cat(ps).argmax(1).numpy()
        out[name] = {"accuracy": round(accuracy_score(y, pred), 4), "right": int((pred == y).sum()), "n": len(y),
                     "macro_f1": round(f1_score(y, pred, average="macro"), 4)}
    print(json.dumps(out, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("--dataset", default="hushem")
    w.add_argument("--data-dir", required=True)
    w.add_argument("--out", required=True)
    s = sub.add_parser("score")
    s.add_argument("--dataset", default="hushem")
    s.add_argument("--data-dir", required=True)
    s.add_argument("--checkpoints", required=True)
    s.add_argument("--arch", default="effnet")
    s.add_argument("--out", default=None, help="write per-image probabilities here (.npz)")
    args = ap.parse_args()
    {"write": write, "score": score}[args.cmd](args)


if __name__ == "__main__":
    main()
