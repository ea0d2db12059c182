"""Nested probe: would averaging the plain and the CBAM fold model of the same fold beat either alone?

    python -m research.ensemble_probe --dataset hushem [--data-dir ../shared/data] [--tta]

For each outer fold k, the two shipped fold-k models (EfficientNet, EfficientNet + CBAM) and their mean
softmax are scored on fold k's own inner validation (the split training used); the candidate with the
most inner-validation images right (ties: lower inner-validation NLL, then the CBAM model, the paper's)
is fold k's choice. Test folds only report: out-of-fold accuracy and macro-F1 of each fixed candidate
and of the nested per-fold choice. Caveat: a shipped model's inner-validation score is that of the epoch
early stopping kept on the same split (optimistic), while the mean of two such models was never
selected there, so the rule leans towards single models. Prints a table; writes nothing.
"""

from __future__ import annotations

import argparse

from research.nested_choice import NestedTally, fold_sets
from spermlib.training.fold_data import DecodedImages

ARCHS = ("effnet_cbam", "effnet")
CANDIDATES = ("effnet_cbam", "effnet", "mean")


def probe(dataset: str, data_dir: str | None, tta: bool) -> dict:
    decoded: dict[int, DecodedImages] = {}  # both archs read the same decoded images
    tally = NestedTally(CANDIDATES, tie_break=lambda c: c == "effnet_cbam")  # ties: the paper's model
    for pair in zip(*(fold_sets(dataset, data_dir, a, decoded=decoded) for a in ARCHS), strict=True):
        if len({f.fold for f in pair}) != 1:
            raise SystemExit(f"the two archs' shipped folds differ: {[f.fold for f in pair]}")
        val_p = {a: f.model(f.x_val, tta=tta).probabilities for a, f in zip(ARCHS, pair, strict=True)}
        test_p = {a: f.model(f.x_test, tta=tta).probabilities for a, f in zip(ARCHS, pair, strict=True)}
        val_p["mean"] = (val_p[ARCHS[0]] + val_p[ARCHS[1]]) / 2
        test_p["mean"] = (test_p[ARCHS[0]] + test_p[ARCHS[1]]) / 2
        tally.add_fold(pair[0].fold, val_p, pair[0].y_val, test_p, pair[0].y_test)
    return tally.report()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--tta", action="store_true", help="8 flip/rotation views per image, as evaluate --tta")
    args = parser.parse_args()
    probe(args.dataset, args.data_dir, args.tta)


if __name__ == "__main__":
    main()
