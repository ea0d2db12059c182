"""Out-of-fold scores of every candidate of the HuSHeM GPU sweep and of the nested per-fold choice.

Reads the probability files of ``probabilities.py`` (one per candidate folder and arch) and the choice of
``choose.py``; writes one JSON with, per candidate, the folds it has, pooled accuracy and macro-F1 on
those folds' test images (plain and with 8-view TTA), and the same for the per-fold choice.

    python tools/hushem_gpu/summarize.py PROBS_DIR CHOSEN.json OUT.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score


def pooled(parts: list[tuple[Path, int]]) -> dict:
    y, plain, tta = [], [], []
    for path, k in parts:
        d = json.loads(path.read_text())[str(k)]
        y += d["test_y"]
        plain += list(np.argmax(d["test_p"], 1))
        tta += list(np.argmax(d["test_p_tta"], 1))
    y, plain, tta = map(np.asarray, (y, plain, tta))
    def acc(p) -> float:
        return round(float((p == y).mean()), 4)

    def f1(p) -> float:
        return round(float(f1_score(y, p, average="macro")), 4)

    return {"n_test_images": len(y), "accuracy": acc(plain), "macro_f1": f1(plain),
            "tta_accuracy": acc(tta), "tta_macro_f1": f1(tta)}


def main() -> None:
    probs, chosen_path, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    candidates = {}
    for f in sorted(probs.glob("*.effnet*.json")):  # CANDIDATE.ARCH.json
        folds = sorted(int(k) for k in json.loads(f.read_text()))
        candidates[f.stem] = {"folds": folds, **pooled([(f, k) for k in folds])}
    chosen = json.loads(chosen_path.read_text())
    procedure = {arch: {"per_fold": {k: v["candidate"] for k, v in ks.items()},
                        **pooled([(probs / f"{v['candidate']}.{arch}.json", int(k)) for k, v in ks.items()])}
                 for arch, ks in chosen.items() if ks}
    out.write_text(json.dumps({"candidates": candidates, "nested_choice": procedure}, indent=1) + "\n")
    for name, c in {**candidates, **{f"CHOICE {a}": p for a, p in procedure.items()}}.items():
        print(f"{name:32s} n={c['n_test_images']:3d} acc {c['accuracy']:.3f} F1 {c['macro_f1']:.3f}  "
              f"TTA acc {c['tta_accuracy']:.3f} F1 {c['tta_macro_f1']:.3f}")


if __name__ == "__main__":
    main()
