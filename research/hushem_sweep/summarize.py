"""Out-of-fold scores of every candidate of the HuSHeM recipe sweep and of the nested per-fold choice.

Reads the probability files of ``probabilities.py`` (one per candidate folder and arch) and the choice of
``choose.py``; writes one JSON with, per candidate, the folds it has, pooled accuracy and macro-F1 on
those folds' test images (plain and with 8-view TTA), and the same for the per-fold choice.

    python -m research.hushem_sweep.summarize PROBS_DIR CHOSEN.json OUT.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from spermlib.training.loop import val_metrics


def pooled(parts: list[tuple[Path, int]]) -> dict:
    """Accuracy and macro-F1 over the test images of ``parts`` (probability file, fold), plain and with TTA."""
    folds = [json.loads(path.read_text())[str(k)] for path, k in parts]
    y = np.concatenate([d["test_y"] for d in folds])
    plain, tta = (val_metrics(np.concatenate([d[key] for d in folds]), y) for key in ("test_p", "test_p_tta"))
    return {"n_test_images": len(y), "accuracy": round(plain["accuracy"], 4), "macro_f1": round(plain["macro_f1"], 4),
            "tta_accuracy": round(tta["accuracy"], 4), "tta_macro_f1": round(tta["macro_f1"], 4)}


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
