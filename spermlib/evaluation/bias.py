"""The ``bias`` command: each fold model's decision bias fitted on its own inner validation, the taken ones stored.

    spermlib bias --dataset D [--arch A]   → fold cards' ``decision_bias``, results/<D>/decision_bias.json

The rule and what the bias is: ``calibration.decision_bias``. One inference-core pass with TTA per fold model over
its inner-validation images (the split its training used) gives both modes (the TTA mean and the unaugmented
view), scored without any bias the card may already carry; test folds are never read. Run it after ``ood``
(whose temperature it fits at) and before ``evaluate``; a retrain or ``average`` writes a card without it.
"""

from __future__ import annotations

import time
from pathlib import Path

from spermlib.calibration.decision_bias import MODES, ONE_VIEW, RULE, TTA, decide
from spermlib.calibration.fit import store_biases
from spermlib.data.datasets import DatasetSpec, is_full_dataset
from spermlib.data.splits import manifest_for_root
from spermlib.evaluation.evaluate import inner_validation_sets
from spermlib.store.cards import archs_with_checkpoints
from spermlib.store.paths import default_checkpoints_dir, project_relative
from spermlib.store.results import DECISION_BIAS_FILE, results_to_update, write_json


def fold_decisions(spec: DatasetSpec, root: Path, manifest, manifest_sha: str, arch: str, checkpoints_dir: Path,
                   device: str | None = None) -> dict[int, dict]:
    """Per fold checkpoint: the rule's decision for each mode on the fold's inner validation."""
    out = {}
    # scored on the model's own output: not through a bias its card may already carry
    for k, fold_model, card, x, y in inner_validation_sets(spec, root, manifest, manifest_sha, arch, checkpoints_dir,
                                                           device, card_changes={"decision_bias": None}):
        res = fold_model(x, tta=True)
        t = float(card.get("temperature") or 1.0)
        out[k] = {ONE_VIEW: decide(res.first.probabilities, y, t), TTA: decide(res.probabilities, y, t),
                  "weights_sha256": card["weights_sha256"]}
    return out


def decision_bias_dataset(spec: DatasetSpec, root: Path, archs: list[str] | None = None, splits_path=None,
                          device: str | None = None, checkpoints_dir: Path | None = None,
                          results_base: Path | None = None) -> dict:
    """Decide every fold model of ``archs`` (default: every arch with checkpoints), write the taken biases into
    the cards (removing any other) and the decisions into decision_bias.json."""
    checkpoints_dir = Path(checkpoints_dir or default_checkpoints_dir())
    manifest, sha = manifest_for_root(spec, root, splits_path)
    path, report = results_to_update(spec, root, DECISION_BIAS_FILE, sha, results_base)
    for arch in archs_with_checkpoints(spec, archs, checkpoints_dir):
        folds = fold_decisions(spec, root, manifest, sha, arch, checkpoints_dir, device)
        store_biases(spec, arch, checkpoints_dir, folds)
        report["archs"][arch] = {
            "folds": {str(k): d for k, d in folds.items()},
            "taken": {m: [k for k, d in folds.items() if d[m]["taken"]] for m in MODES},
        }
    report.update({"dataset": spec.name, "classes": list(spec.class_dirs), "split_sha256": sha,
                   "full_dataset": is_full_dataset(root), "rule": RULE,
                   "where": "fold cards (`decision_bias`, raw-logit scale: temperature × fitted bias, per mode)",
                   "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "written_to": project_relative(path)})
    write_json(path, report)
    return report
