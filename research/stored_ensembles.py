"""Ensembles of the HuSHeM recipe sweep's candidates, from their stored probabilities (no model is run).

The sweep kept every candidate's test-fold probabilities, one view and TTA ×8
(``research/results/sweeps/hushem_gpu/probabilities/<candidate>.json``). This prints, out of fold:

* each 5-fold candidate alone, and fixed ensembles (the mean of all of them, of the hardened ones);
* the best subset of two or more, picked *after* seeing the test folds: not a valid protocol, a ceiling only;
* a second draw of one recipe (``cbam_l0``, a rerun of Lite0 CBAM on the GPU, four folds) averaged with ``cbam_l0_h``.

    python -m research.stored_ensembles
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

PROBS = Path(__file__).resolve().parent / "results" / "sweeps" / "hushem_gpu" / "probabilities"


def load(name: str) -> dict:
    return json.loads((PROBS / f"{name}.json").read_text())


def score(runs: list[dict], key: str, folds: list[str]) -> tuple[int, int, float]:
    """(images right, images, macro-F1) of the mean probabilities of ``runs`` over ``folds``."""
    ys, preds = [], []
    for k in folds:
        paths = runs[0][k]["test_paths"]
        if any(r[k]["test_paths"] != paths for r in runs):
            raise ValueError(f"fold {k}: the runs scored different images")
        ys.append(np.asarray(runs[0][k]["test_y"]))
        preds.append(np.mean([np.asarray(r[k][key]) for r in runs], axis=0).argmax(1))
    y, pred = np.concatenate(ys), np.concatenate(preds)
    return int((pred == y).sum()), len(y), round(float(f1_score(y, pred, average="macro")), 3)


def main() -> None:
    runs = {p.stem: load(p.stem) for p in sorted(PROBS.glob("*.json"))}
    full = {n: r for n, r in runs.items() if sorted(r) == [str(k) for k in range(5)]}
    folds = [str(k) for k in range(5)]
    print("5-fold candidates (images right of 216, macro-F1; one view | TTA x8):")
    for name, r in full.items():
        print(f"  {name:<24} {score([r], 'test_p', folds)} | {score([r], 'test_p_tta', folds)}")
    hardened = [n for n in full if n.split(".")[0].endswith("_h")]
    for label, names in (("mean of all", list(full)), ("mean of the hardened", hardened)):
        members = [full[n] for n in names]
        print(f"{label} ({len(names)}): {score(members, 'test_p', folds)} | {score(members, 'test_p_tta', folds)}")
    subsets = [c for r in range(2, len(full) + 1) for c in itertools.combinations(full, r)]
    best = max(subsets, key=lambda c: score([full[n] for n in c], "test_p_tta", folds))
    print(f"best of {len(subsets)} subsets, picked after seeing the test folds (a ceiling, not a result): "
          f"{best} {score([full[n] for n in best], 'test_p_tta', folds)}")
    a, b = runs["cbam_l0_h.effnet_cbam"], runs["cbam_l0.effnet_cbam"]
    common = sorted(set(a) & set(b))
    for key in ("test_p", "test_p_tta"):
        print(f"second draw, folds {common}, {key}: hardened {score([a], key, common)}, "
              f"rerun {score([b], key, common)}, mean {score([a, b], key, common)}")


if __name__ == "__main__":
    main()
