"""Nested, per-fold choice among the hardened candidates of the HuSHeM recipe sweep.

The rule was fixed before any result was seen: for arch A and outer fold k, take the hardened candidate
with the highest accuracy on fold k's own inner-validation images (plain forward, as shipped), ties
broken by lower inner-validation NLL, then by the candidate's place in ``PRIORITY`` (the incumbent
recipe, Lite0 seed 0, first). Test folds are not read. Hardened models all ship their last epoch, so
their inner-validation scores are not inflated by epoch selection and can be compared.

A candidate of a fold counts only if its hardened model exists (``run_jobs --stop-launching-after`` may leave
folds out). ``l0``: where the sweep on the GPU has no hardened Lite0 model for a fold, the folder holds the CPU
hardening of the shipped Lite0 models (the same hardening stage started from the same recipe's models).

    python -m research.hushem_sweep.choose PROBS_DIR OUT.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from spermlib.training.loop import val_metrics

PRIORITY = ("l0", "l0s1", "l1", "l2", "l2s1")  # incumbent first
ARCH_PREFIX = {"effnet_cbam": "cbam", "effnet": "eff"}
N_FOLDS = 5


def inner_val_scores(d: dict) -> tuple[float, float]:
    """(accuracy, mean NLL) of one fold model's inner-validation probabilities, as training scores them."""
    m = val_metrics(np.asarray(d["val_p"]), np.asarray(d["val_y"]))
    return m["accuracy"], m["nll"]


def choose(probs_dir: Path) -> dict:
    chosen: dict = {}
    for arch, prefix in ARCH_PREFIX.items():
        chosen[arch] = {}
        for k in range(N_FOLDS):
            rows = []
            for rank, c in enumerate(PRIORITY):
                f = probs_dir / f"{prefix}_{c}_h.{arch}.json"
                d = json.loads(f.read_text()).get(str(k)) if f.exists() else None
                if d is not None:
                    acc, nll = inner_val_scores(d)
                    rows.append((-acc, nll, rank, f"{prefix}_{c}_h", acc))
            if rows:
                best = min(rows)
                chosen[arch][k] = {"candidate": best[3], "inner_val_accuracy": best[4],
                                   "considered": {r[3]: {"acc": r[4], "nll": round(r[1], 4)} for r in rows}}
    return chosen


def main() -> None:
    chosen = choose(Path(sys.argv[1]))
    Path(sys.argv[2]).write_text(json.dumps(chosen, indent=1))
    for arch, ks in chosen.items():
        print(arch, {k: v["candidate"] for k, v in ks.items()})


if __name__ == "__main__":
    main()
