"""What the nested probes (``research.ensemble_probe``, ``research.tta_probe``, ``research.bias_probe``) share: each
fold model with fold k's inner validation and test fold, the choice among candidates by the inner validation
alone, and the out-of-fold scores of every candidate and of that choice."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score

from spermlib.data.datasets import get_dataset, resolve_data_root
from spermlib.data.splits import manifest_for_root
from spermlib.evaluation.evaluate import inner_validation_sets
from spermlib.inference.core import InferenceModel
from spermlib.store.paths import default_checkpoints_dir
from spermlib.training.fold_data import DecodedImages


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean())


@dataclass
class FoldSet:
    """One shipped fold model on the inference core, with its inner validation (where a probe decides) and its
    test fold (which only reports): uint8 images and class indices."""

    fold: int
    model: InferenceModel
    card: dict
    x_val: torch.Tensor
    y_val: np.ndarray
    x_test: torch.Tensor
    y_test: np.ndarray


def fold_sets(dataset: str, data_dir: str | None, arch: str, card_changes: dict | None = None,
              decoded: dict[int, DecodedImages] | None = None) -> Iterator[FoldSet]:
    """Every shipped fold model of ``arch`` (its card updated with ``card_changes``) with its inner validation (as
    ``evaluate.inner_validation_sets`` gives it) and its test fold. ``decoded`` caches the decoded test images per
    input size and may be shared by the probes of several archs."""
    spec = get_dataset(dataset)
    root = resolve_data_root(spec, data_dir)
    manifest, sha = manifest_for_root(spec, root, None)
    cls = {c: i for i, c in enumerate(spec.class_dirs)}
    decoded = {} if decoded is None else decoded
    for k, fm, card, x_val, y_val in inner_validation_sets(spec, root, manifest, sha, arch, default_checkpoints_dir(),
                                                           card_changes=card_changes):
        size = fm.prep.input_size
        decoded.setdefault(size, DecodedImages(root, manifest, size))
        test = manifest[manifest["fold"] == k]
        yield FoldSet(k, fm, card, x_val, y_val, decoded[size].take(list(test["path"])),
                      test["label"].map(cls).to_numpy())


class NestedTally:
    """Per outer fold: each candidate's inner-validation score (most right, then lower NLL, then ``tie_break``;
    with ``by_nll=False`` most right, then ``tie_break``), the fold's choice, and every candidate's test-fold
    predictions; :meth:`report` gives the out-of-fold table."""

    def __init__(self, candidates: Sequence[str], tie_break: Callable[[str], float], by_nll: bool = True):
        self.candidates = list(candidates)
        self.tie_break = tie_break
        self.by_nll = by_nll
        self.predictions: dict[str, list[np.ndarray]] = {c: [] for c in (*self.candidates, "nested")}
        self.labels: list[np.ndarray] = []
        self.choices: dict[int, str] = {}

    def add_fold(self, fold: int, val_p: Mapping[str, np.ndarray], y_val: np.ndarray,
                 test_p: Mapping[str, np.ndarray], y_test: np.ndarray, name: str = "") -> str:
        score = {c: (int((val_p[c].argmax(1) == y_val).sum()), -nll(val_p[c], y_val) if self.by_nll else 0.0,
                     self.tie_break(c)) for c in self.candidates}
        choice = max(self.candidates, key=lambda c: score[c])
        self.choices[fold] = choice
        for c in self.candidates:
            self.predictions[c].append(test_p[c].argmax(1))
        self.predictions["nested"].append(test_p[choice].argmax(1))
        self.labels.append(y_test)
        print(f"{name}fold {fold}: inner-val right "
              + ", ".join(f"{c} {score[c][0]}/{len(y_val)}" for c in self.candidates) + f" -> {choice}", flush=True)
        return choice

    def report(self, name: str = "") -> dict:
        y = np.concatenate(self.labels)
        out = {}
        for c, parts in self.predictions.items():
            p = np.concatenate(parts)
            out[c] = (accuracy_score(y, p), f1_score(y, p, average="macro"))
            print(f"{name}{c:12s} out of fold: accuracy {100 * out[c][0]:.1f} %, macro-F1 {out[c][1]:.3f}",
                  flush=True)
        return {"oof": out, "choices": self.choices}


def run_per_arch(doc: str, probe: Callable[[str, str | None, str], object]) -> None:
    """A per-arch probe's command line: ``--dataset D [--data-dir DIR] [--archs effnet,effnet_cbam]``, then
    ``probe(dataset, data_dir, arch)`` for each arch."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--archs", default="effnet,effnet_cbam")
    args = parser.parse_args()
    for arch in args.archs.split(","):
        probe(args.dataset, args.data_dir, arch)
