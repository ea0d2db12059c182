"""Nested probe: would averaging the plain and the CBAM fold model of the same fold beat either alone?

    python -m tools.ensemble_probe --dataset hushem [--data-dir ../shared/data] [--tta]

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

from spermlib.data.datasets import get_dataset, resolve_data_root
from spermlib.data.splits import manifest_for_root
from spermlib.evaluation.evaluate import fold_checkpoints
from spermlib.inference.core import InferenceModel
from spermlib.store.paths import default_checkpoints_dir
from spermlib.training.fold_data import DecodedImages
from tools.nested_choice import NestedTally, inner_validation

ARCHS = ("effnet_cbam", "effnet")
CANDIDATES = ("effnet_cbam", "effnet", "mean")


def probe(dataset: str, data_dir: str | None, tta: bool) -> dict:
    spec = get_dataset(dataset)
    root = resolve_data_root(spec, data_dir)
    manifest, sha = manifest_for_root(spec, root, None)
    cls = {c: i for i, c in enumerate(spec.class_dirs)}
    per_arch = {a: {k: (model, card) for k, model, card in fold_checkpoints(spec, manifest, sha, a,
                                                                            default_checkpoints_dir())}
                for a in ARCHS}
    decoded: dict[int, DecodedImages] = {}
    tally = NestedTally(CANDIDATES, tie_break=lambda c: c == "effnet_cbam")  # ties: the paper's model
    for k in sorted(per_arch[ARCHS[0]]):
        val_p, test_p = {}, {}
        test = manifest[manifest["fold"] == k]
        for a in ARCHS:
            model, card = per_arch[a][k]
            fm = InferenceModel.from_card(model, card)
            size = fm.prep.input_size
            decoded.setdefault(size, DecodedImages(root, manifest, size))
            x_val, y_val = inner_validation(spec, root, manifest, k, card, decoded[size])
            val_p[a] = fm(x_val, tta=tta).probabilities
            test_p[a] = fm(decoded[size].take(list(test["path"])), tta=tta).probabilities
        val_p["mean"] = (val_p[ARCHS[0]] + val_p[ARCHS[1]]) / 2
        test_p["mean"] = (test_p[ARCHS[0]] + test_p[ARCHS[1]]) / 2
        tally.add_fold(k, val_p, y_val, test_p, test["label"].map(cls).to_numpy())
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
