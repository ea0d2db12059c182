"""Nested probe: does a per-class logit bias, fitted on a fold's own inner validation, fix the decision rule?

    python -m research.bias_probe --dataset smids [--data-dir ../shared/data] [--archs effnet,effnet_cbam]

Temperature scaling (``ood``) cannot move a single model's predicted class. A per-class additive bias on the
(tempered) log-probabilities can: it is the prior/bias half of vector scaling (Guo et al., ICML 2017) and the
usual correction when the classes' decision thresholds sit in the wrong place. Per fold model, with and
without the shipped 8-view TTA (one core pass gives both), the candidates are

* ``as_is``: ``argmax(log p / T)`` (what ``predict`` does; T the card's temperature, 1 without one);
* ``bias``: ``argmax(log p / T + b)``, ``b`` (class 0's entry fixed at 0) minimising the NLL of fold k's
  inner-validation images (L-BFGS), then applied unchanged to fold k's test images.

Rule, fixed before any score was seen: fold k takes ``bias`` only if, cross-fitted on its inner validation
(stratified 5-fold split of those images, seed 0: ``b`` fitted on four parts, scored on the fifth), it gets
strictly more inner-validation images right than ``as_is``; a tie keeps ``as_is``. Test folds only report:
out-of-fold accuracy and macro-F1 of each fixed candidate and of the nested per-fold choice. Caveat: a shipped
model's inner validation also chose its early-stopping epoch, so its inner-validation errors are fewer and
may be placed differently from its test errors. Prints a table; writes nothing. The rule now ships as
``spermlib bias`` (``spermlib.calibration.decision_bias``); this probe reads the models without it.
"""

from __future__ import annotations

import numpy as np
from scipy.special import softmax

from research.nested_choice import NestedTally, fold_sets, run_per_arch
from spermlib.calibration.decision_bias import cross_fitted, fit_bias, log_probabilities

CANDIDATES = ("as_is", "bias")


def probe(dataset: str, data_dir: str | None, arch: str) -> dict:
    tallies = {v: NestedTally(CANDIDATES, tie_break=lambda c: c == "as_is", by_nll=False)
               for v in ("one view", "tta")}
    for f in fold_sets(dataset, data_dir, arch, card_changes={"decision_bias": None}):  # the model's own output
        t = float(f.card.get("temperature") or 1.0)
        val_out, test_out = f.model(f.x_val, tta=True), f.model(f.x_test, tta=True)
        for view, val_p, test_p in (("one view", val_out.first.probabilities, test_out.first.probabilities),
                                    ("tta", val_out.probabilities, test_out.probabilities)):
            lv, lt = log_probabilities(val_p, t), log_probabilities(test_p, t)
            b = fit_bias(lv, f.y_val)
            print(f"{arch} {view} fold {f.fold}: T = {t:.3f}, b = {np.round(b, 3).tolist()}", flush=True)
            tallies[view].add_fold(f.fold, {"as_is": softmax(lv, axis=1), "bias": cross_fitted(lv, f.y_val)},
                                   f.y_val, {"as_is": softmax(lt, axis=1), "bias": softmax(lt + b, axis=1)},
                                   f.y_test, name=f"{arch} {view} ")
    return {view: tally.report(name=f"{arch} {view} ") for view, tally in tallies.items()}


def main() -> None:
    run_per_arch(__doc__, probe)


if __name__ == "__main__":
    main()
