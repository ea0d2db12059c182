"""Share of test-fold images the shipped out-of-domain detectors flag under the robustness suite's mild and
middle corruptions, each image scored by the fold model that never saw it.

    python -m research.ood_mild_flags --dataset hushem --arch effnet_cbam [--data-dir ../shared/data]

Prints one line per corruption and severity. It measures how strict a detector is with shifts the model itself
shrugs off (docs, Experiments, out-of-domain mild flags); ``ood.json`` carries the mild rates too.
"""

from __future__ import annotations

import argparse

import numpy as np

from spermlib.calibration.detectors import load_detector
from spermlib.calibration.store import detector_path
from spermlib.data.corruptions import CORRUPTIONS
from spermlib.data.datasets import get_dataset, resolve_data_root
from spermlib.data.preprocess import load_uint8_batch
from spermlib.data.splits import manifest_for_root
from spermlib.evaluation.evaluate import fold_checkpoints
from spermlib.inference.core import InferenceModel
from spermlib.store.paths import default_checkpoints_dir

SEVERITIES = ("mild", "middle")


def flag_rates(dataset: str, arch: str, data_dir: str | None) -> dict[str, float]:
    spec = get_dataset(dataset)
    root = resolve_data_root(spec, data_dir)
    manifest, sha = manifest_for_root(spec, root, None)
    flagged: dict[str, list[np.ndarray]] = {}
    for k, model, card in fold_checkpoints(spec, manifest, sha, arch, default_checkpoints_dir()):
        fold_model = InferenceModel.from_card(model, card)
        detector = load_detector(detector_path(spec, arch, k), card["weights_sha256"])
        if detector is None:
            raise SystemExit(f"no detector for {dataset}/{arch} fold {k}: run `spermlib ood` first")
        x = load_uint8_batch(root, list(manifest.loc[manifest["fold"] == k, "path"]), fold_model.prep.input_size)

        def out_of_domain(images, fold_model=fold_model, detector=detector) -> np.ndarray:
            out = fold_model(images, stats=detector.needs_stats)
            return detector.score(out.features, out.logits, out.stats) < 0

        flagged.setdefault("clean", []).append(out_of_domain(x))
        for name, corruption in CORRUPTIONS.items():
            for severity, value in zip(SEVERITIES, corruption.severities):
                key = f"{name} {severity} ({value:g})"
                flagged.setdefault(key, []).append(out_of_domain(corruption.apply(x, value)))
    return {name: float(np.concatenate(parts).mean()) for name, parts in flagged.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--arch", default="effnet_cbam")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    for name, rate in flag_rates(args.dataset, args.arch, args.data_dir).items():
        print(f"{name:28s} {100 * rate:5.1f} % flagged")


if __name__ == "__main__":
    main()
